#!/usr/bin/env python3
"""ready_time.py LOG CMD [ARGS...]: starts CMD (stderr appended to LOG) with
NOTIFY_SOCKET set, waits for its sd_notify READY=1 and prints "PID SECONDS":
the time from exec to ready. The server keeps running, in its own session.

Why not poll /readyz: once loading is CPU-bound, a poll loop that starts a
curl every few milliseconds takes a good share of the cores it measures.
Waiting on a datagram socket costs nothing, and READY=1 is sent at the
moment /readyz turns 200."""
import os
import socket
import subprocess
import sys
import tempfile
import time


def main() -> None:
    log, cmd = sys.argv[1], sys.argv[2:]
    tmp = tempfile.mkdtemp(prefix="ready-")
    path = os.path.join(tmp, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.2)
    env = dict(os.environ, NOTIFY_SOCKET=path)
    with open(log, "ab") as err:
        t0 = time.monotonic()
        proc = subprocess.Popen(
            cmd, env=env, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True
        )
    try:
        while True:
            try:
                message = sock.recv(4096)
            except socket.timeout:
                if proc.poll() is not None:
                    sys.exit(f"{cmd[0]} exited during start-up (status {proc.returncode})")
                continue
            if b"READY=1" in message.split(b"\n"):
                break
        print(proc.pid, f"{time.monotonic() - t0:.2f}")
    finally:
        sock.close()
        os.unlink(path)
        os.rmdir(tmp)


if __name__ == "__main__":
    main()
