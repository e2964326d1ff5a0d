#!/usr/bin/env python3
"""cli_pty.py: send a signal to a program while it is blocked writing to a terminal.

usage: cli_pty.py SIGNAL OUT_FILE FD -- PROGRAM ARGS...

Runs PROGRAM with file descriptor FD (1 or 2) on a pseudo-terminal whose output is stopped (as
after Ctrl-S), so its first write to FD blocks in the middle of its work: a conversion with its
temporary file open, or an answer being streamed. Then it sends SIGNAL (e.g. INT), resumes the
output (Ctrl-Q), reads everything the program writes to the terminal until it exits, saves that
to OUT_FILE and prints the exit status as the shell reports it (128 + n when killed by signal n).
The other standard descriptors go to /dev/null (stdin) and stay as they are (stdout/stderr).
Exits 77 when no pseudo-terminal can be had.
"""

import os
import signal
import subprocess
import sys
import termios
import time


def sleep_state(pid: int):
    """(sleeping, wait channel): the wait channel names the kernel function pid sleeps in, or
    is "" where the kernel does not say (it then reads "0")."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False, ""
    try:
        with open(f"/proc/{pid}/wchan") as f:
            wchan = f.read().strip()
    except OSError:
        wchan = ""
    return state == "S", "" if wchan == "0" else wchan


def wait_until_blocked(proc) -> bool:
    """Waits until proc sleeps in its terminal write: named by the wait channel, or, where the
    kernel hides it, asleep for a whole second (the tiny models never pause that long)."""
    deadline, asleep_since = time.time() + 60, None
    while proc.poll() is None and time.time() < deadline:
        sleeping, wchan = sleep_state(proc.pid)
        if sleeping and any(w in wchan for w in ("tty", "wait_woken", "write")):
            return True
        asleep_since = (asleep_since or time.time()) if sleeping and not wchan else None
        if asleep_since is not None and time.time() - asleep_since >= 1.0:
            return True
        time.sleep(0.01)
    return False


def main(argv):
    if len(argv) < 5 or argv[4] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    sig = getattr(signal, "SIG" + argv[1])
    out_file, fd = argv[2], int(argv[3])
    try:
        master, slave = os.openpty()
    except OSError as e:
        print(f"no pseudo-terminal: {e}")
        return 77
    attrs = termios.tcgetattr(slave)
    attrs[0] |= termios.IXON  # Ctrl-S / Ctrl-Q flow control
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    os.write(master, b"\x13")  # Ctrl-S: output stops, the next write blocks
    time.sleep(0.1)
    kw = {"stdin": subprocess.DEVNULL, "stdout" if fd == 1 else "stderr": slave}
    proc = subprocess.Popen(argv[5:], **kw)
    os.close(slave)
    if not wait_until_blocked(proc):
        print("the program never blocked on the terminal", file=sys.stderr)
        proc.kill()
        return 1
    time.sleep(0.2)  # settled in the write
    os.kill(proc.pid, sig)
    time.sleep(0.3)
    os.write(master, b"\x11")  # Ctrl-Q: output resumes
    data = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: every writer closed the terminal
            break
        if not chunk:
            break
        data += chunk
    rc = proc.wait(timeout=60)
    with open(out_file, "wb") as f:
        f.write(data)
    print(128 - rc if rc < 0 else rc)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
