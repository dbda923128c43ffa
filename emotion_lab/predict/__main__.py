from emotion_lab.predict.cli import main
from emotion_lab.process import run_command

run_command(main)
