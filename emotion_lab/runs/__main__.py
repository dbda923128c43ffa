from emotion_lab.process import run_command
from emotion_lab.runs.cli import main

run_command(main)
