from emotion_lab.cli import main

main()
