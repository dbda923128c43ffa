from emotion_lab.process import run_command
from emotion_lab.train.cli import main

run_command(main)
