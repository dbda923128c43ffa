from emotion_lab.attention.cli import main
from emotion_lab.process import run_command

run_command(main)
