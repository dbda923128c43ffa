from emotion_lab.predict.cli import main

main()
