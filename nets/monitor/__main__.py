"""``python -m nets.monitor``: the monitor's demo (:mod:`nets.monitor.demo`)."""
from cli import exit_process
from nets.monitor.demo import main

if __name__ == "__main__":
    exit_process(main())
