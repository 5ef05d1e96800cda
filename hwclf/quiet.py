"""TensorFlow's start-up lines off the console.

Importing TensorFlow prints, from C++ and before absl logging is initialised, lines such as
"I0000 ... cudart_stub.cc:31] Could not find cuda drivers" and "oneDNN custom operations are on" straight to
file descriptor 2: TF_CPP_MIN_LOG_LEVEL does not reach them (measured with TF 2.21), and a sweep prints them
once per worker. So the import runs with descriptor 2 caught in a file, and only lines that are not this
start-up chatter are passed on (a real error at import still shows). TF_CPP_MIN_LOG_LEVEL=3 then silences
the C++ logging after start-up, such as "E0000 ... cuda_platform.cc:52] failed call to cuInit" on machines
without a GPU; Python exceptions are unaffected.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile

# absl's pre-init notice, and absl/glog INFO or WARNING lines ("I0000 00:00:1796... 8108 port.cc:153] ...")
NOISE = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
                   r"|[IW]\d{4} \d\d:\d\d:[\d.]+ +\d+ [\w.]+:\d+\] )")


def quiet_tensorflow_import(level: str = "3") -> None:
    """Set TF's C++ log level and import Keras (and with it its backend) with the start-up lines dropped.

    Must run before anything imports TensorFlow in this process; a no-op afterwards."""
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = level
    if "keras" in sys.modules or "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    with tempfile.TemporaryFile() as caught:
        saved = os.dup(2)
        os.dup2(caught.fileno(), 2)
        try:
            import keras  # noqa: F401
        except ImportError:
            pass  # reported where it is really needed
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        caught.seek(0)
        kept = [line for line in caught.read().decode(errors="replace").splitlines() if not NOISE.match(line)]
    if kept:
        print("\n".join(kept), file=sys.stderr, flush=True)


def drop_sigterm_tracebacks(lines: list) -> list:
    """A worker's output without the traceback of Ray stopping it.

    Ray's worker answers SIGTERM (sent when a sweep ends and its workers are stopped) by raising SystemExit
    from its signal handler. Where the signal lands inside a finaliser (a weakref callback), Python prints
    that exception as "Exception ignored in ... Traceback ... SystemExit: 1": not an error of the trial, and
    the sweep's results are complete. Only a block that passes through Ray's ``sigterm_handler`` and ends
    in SystemExit is dropped; every other traceback is kept."""
    out, block = [], None
    for line in lines:
        if block is None:
            if line.startswith(("Exception ignored in", "Traceback (most recent call last)")):
                block = [line]
            else:
                out.append(line)
            continue
        block.append(line)
        if line.startswith("SystemExit"):
            if not any("in sigterm_handler" in b for b in block):
                out.extend(block)
            block = None
        elif line.strip() and not line.startswith((" ", "\t", "Traceback", "Exception ignored")):
            out.extend(block)  # another exception's last line: a real error
            block = None
    return out + (block or [])
