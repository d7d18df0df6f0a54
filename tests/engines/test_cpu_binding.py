"""Engines on one node claim disjoint core slots; a killed engine's slot is free again."""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from reasoner_ray.engines.cpu_binding import claim_cores, core_slots

ROOT = Path(__file__).resolve().parents[2]


def test_core_slots_are_disjoint_runs():
    assert core_slots([0, 1, 2, 3], 2) == [[0, 1], [2, 3]]
    assert core_slots([0, 1, 2], 2) == [[0, 1]]  # the partial run is left out
    assert core_slots([0, 1], 1) == [[0], [1]]
    assert core_slots([0, 1], 4) == [[0, 1]]  # asking for more cores than there are: one slot of all


def test_pin_engine_pins_the_process_and_sizes_torch_threads():
    code = textwrap.dedent("""
        import os, torch
        from reasoner_ray.engines.cpu_binding import pin_engine
        core = sorted(os.sched_getaffinity(0))[-1]
        pin_engine([core])
        print(sorted(os.sched_getaffinity(0)) == [core], torch.get_num_threads(), os.environ["VLLM_CPU_OMP_THREADS_BIND"] == str(core))
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "1", "True"]


def _holder(lock_dir: Path) -> subprocess.Popen:
    """A process that claims one core and holds it until killed; prints the claimed cores."""
    code = textwrap.dedent(f"""
        import sys, time
        from reasoner_ray.engines.cpu_binding import claim_cores
        print(claim_cores(1, {str(lock_dir)!r}).cores, flush=True)
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    return proc


def test_claims_are_exclusive_until_the_holder_dies(tmp_path):
    cores = sorted(os.sched_getaffinity(0))
    holder = _holder(tmp_path)
    try:
        held = eval(holder.stdout.readline())  # noqa: S307 - a list printed by our own child
        assert held == [cores[0]]
        mine = claim_cores(1, tmp_path)
        if len(cores) > 1:
            assert mine.cores == [cores[1]], "the second engine must get the next core, not share the first"
        mine.release()
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        second = _holder(tmp_path)  # the kernel dropped the dead holder's lock: its core is free again
        try:
            assert eval(second.stdout.readline()) == [cores[0]]  # noqa: S307
        finally:
            second.kill()
            second.wait()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
