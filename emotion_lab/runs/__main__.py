from emotion_lab.runs.cli import main

main()
