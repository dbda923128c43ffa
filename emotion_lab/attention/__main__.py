from emotion_lab.attention.cli import main

main()
