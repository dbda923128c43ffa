from emotion_lab.process import run_command
from emotion_lab.stopping import stoppable
from emotion_lab.train.cli import main
from emotion_lab.train.launch import is_main_launch_process

run_command(stoppable(main, speaks=is_main_launch_process))
