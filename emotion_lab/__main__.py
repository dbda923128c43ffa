from emotion_lab.train.cli import main

main()
