from emotion_lab.compare.cli import main

main()
