"""The `jaxlearn` console command as a user runs it: a real process, its exit status and output."""
import os, shutil, signal, subprocess, sys, time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = os.environ.get("JAXLEARN_DATA") or str(ROOT.parent / "shared" / "data")
# One small run shape for every test that stops and resumes a run: 40 steps, a checkpoint every 10.
TRAIN = ("train", "lstm", "--steps", "40", "--ckpt-every", "10", "--no-progress")


ENV = {"JAXLEARN_DATA": DATA, "JAXLEARN_PRESET": "tiny"}


@pytest.fixture(scope="module", autouse=True)
def compile_cache(tmp_path_factory):
    """The `jaxlearn` processes of this file share one persistent XLA cache: a later run loads the compiled programs
    of the first (the same binaries, so the same numbers) instead of compiling them again, which halves its time."""
    ENV.update(JAX_COMPILATION_CACHE_DIR=str(tmp_path_factory.mktemp("xla_cache")),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="-1")


def _command(*args, env=None):
    exe = shutil.which("jaxlearn")
    assert exe, "the `jaxlearn` command is not on PATH: run the README's install command (make install)"
    return [exe, *args], {**os.environ, **ENV, **(env or {})}


def jaxlearn(*args, cwd, timeout=300, env=None):
    cmd, env = _command(*args, env=env)
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def start(*args, cwd, env=None):
    "Start `jaxlearn ARGS` in the background; its output goes to cwd/stdout.txt and cwd/stderr.txt."
    cmd, env = _command(*args, env=env)
    with open(cwd / "stdout.txt", "w") as out, open(cwd / "stderr.txt", "w") as err:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=err)
    proc.stderr_path = cwd / "stderr.txt"
    return proc


def wait_for(what, done, proc, timeout=300):
    "Poll `done()` until true; fail (with the run's stderr) if the process exits first or it takes too long."
    t0 = time.monotonic()
    while not done():
        if proc.poll() is not None:
            pytest.fail(f"the run exited ({proc.returncode}) before {what}: {Path(proc.stderr_path).read_text()[-2000:]}")
        if time.monotonic() - t0 > timeout:
            proc.kill(); pytest.fail(f"no {what} after {timeout} s")
        time.sleep(0.005)


def saved_steps(ckpt: Path) -> list[int]:
    return sorted(int(p.name) for p in ckpt.iterdir() if p.name.isdigit())


def assert_same_run(got: Path, want: Path):
    "Two `jaxlearn train` folders end in the same state: every array bit for bit, and the history."
    import numpy as np, jax
    from jaxlearn.train import load_checkpoint
    (g, _), (w, _) = load_checkpoint(got / "checkpoints"), load_checkpoint(want / "checkpoints")
    assert g["step"] == w["step"] == 40, (g["step"], w["step"])
    for part in ("params", "opt_state", "other", "carry"):   # weights, AdamW moments and count, RNG, the LSTM carry
        gl, wl = (dict(jax.tree_util.tree_leaves_with_path(t[part])) for t in (g, w))
        assert gl.keys() == wl.keys(), part
        differ = [jax.tree_util.keystr(k) for k in wl if np.asarray(gl[k]).dtype != np.asarray(wl[k]).dtype
                  or np.asarray(gl[k]).shape != np.asarray(wl[k]).shape
                  or np.asarray(gl[k]).tobytes() != np.asarray(wl[k]).tobytes()]
        assert not differ, f"{part}: {len(differ)} of {len(wl)} arrays differ from the uninterrupted run: {differ[:5]}"
    clock = ("tokens_per_s", "mfu")                           # wall-clock columns differ between any two runs
    gh, wh = ({k: v for k, v in t["history"].items() if k not in clock} for t in (g, w))
    differ = {k: (gh.get(k), wh.get(k)) for k in gh.keys() | wh.keys() if gh.get(k) != wh.get(k)}
    assert not differ, (f"history differs from the uninterrupted run in {sorted(differ)}: rows at steps {gh.get('step')}"
                        f" vs {wh.get('step')}")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    "One uninterrupted run: what every stopped and resumed run must end equal to."
    cwd = tmp_path_factory.mktemp("finished")
    r = jaxlearn(*TRAIN, "--out", "run", "--samples", "1", cwd=cwd)
    assert r.returncode == 0, r.stderr[-2000:]
    return cwd, r


def test_help_lists_the_commands(tmp_path):
    r = jaxlearn("--help", cwd=tmp_path)
    assert r.returncode == 0
    for word in ("train", "sample", "bench", "info"): assert word in r.stdout


@pytest.mark.parametrize("args, message", [
    (("train", "bert"), "unknown model 'bert': choose one of lstm, gpt"),
    (("train", "lstm", "--steps", "-3"), "--steps must be >= 1"),
    (("sample", "nowhere", "--temperature", "hot"), "--temperature must be a number"),
    (("sample", "nowhere"), "CHECKPOINT must be a folder written by `jaxlearn train`"),
])
def test_bad_arguments_are_one_line(tmp_path, args, message):
    r = jaxlearn(*args, cwd=tmp_path)
    assert r.returncode == 2, r
    assert message in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_train_then_sample(finished):
    cwd, r = finished
    assert "val loss" in r.stdout and "--- sample 1 ---" in r.stdout
    assert "a checkpoint every 10 steps" in r.stdout and "starting from step 0" in r.stdout
    assert (cwd / "run" / "loss.png").is_file()
    assert saved_steps(cwd / "run" / "checkpoints") == [20, 30, 40]   # every 10 steps; orbax keeps the newest 3
    s = jaxlearn("sample", "run", "--prompt", "KING:", "--length", "50", "--temperature", "0", cwd=cwd)
    assert s.returncode == 0, s.stderr[-2000:]
    assert s.stdout.startswith("KING:") and len(s.stdout.removesuffix("\n")) == len("KING:") + 50
    # library log lines (orbax's "WARNING:absl ... read only") stay out of the command's output
    for name, text in (("train stdout", r.stdout), ("train stderr", r.stderr), ("sample stdout", s.stdout),
                       ("sample stderr", s.stderr)):
        assert not [l for l in text.splitlines() if "WARNING" in l], f"{name}: {text[-1000:]}"


# Loaded by the Python of a `jaxlearn` process whose PYTHONPATH starts with its folder. Orbax writes a checkpoint
# into STEP.orbax-checkpoint-tmp and commits it by renaming that folder in AtomicRenameTemporaryPath.finalize; this
# stops the process (SIGSTOP) once, right before the commit of step $JAXLEARN_TEST_STOP_BEFORE_COMMIT.
STOP_BEFORE_COMMIT = '''
import os, signal
_at = os.environ.pop("JAXLEARN_TEST_STOP_BEFORE_COMMIT", None)
if _at:
    from orbax.checkpoint._src.path import atomicity
    _finalize, _stopped = atomicity.AtomicRenameTemporaryPath.finalize, []
    async def finalize(self, *args, **kwargs):
        if self.get_final().name == _at and not _stopped:
            _stopped.append(True); os.kill(os.getpid(), signal.SIGSTOP)
        return await _finalize(self, *args, **kwargs)
    atomicity.AtomicRenameTemporaryPath.finalize = finalize
'''


def test_sigkill_while_saving_then_resume(tmp_path, finished):
    """SIGKILL (a preemption, the OOM killer) after the first checkpoint, in the middle of writing the second:
    the rerun of the same command resumes from the first and ends bit-identical to the uninterrupted run.

    The kill is made deterministic by stopping the process at orbax's commit point, when every file of step 20 is
    written into 20.orbax-checkpoint-tmp but the folder is not yet renamed: the most complete write a kill can
    interrupt. A kill at any earlier moment leaves a subset of these files in the same uncommitted folder."""
    hook = tmp_path / "hook"; hook.mkdir()
    (hook / "sitecustomize.py").write_text(STOP_BEFORE_COMMIT)
    path = os.pathsep.join(p for p in (str(hook), os.environ.get("PYTHONPATH")) if p)
    p = start(*TRAIN, "--out", "run", "--samples", "0", cwd=tmp_path,
              env={"PYTHONPATH": path, "JAXLEARN_TEST_STOP_BEFORE_COMMIT": "20"})
    stopped = lambda: Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"
    wait_for("the write of checkpoint 20 (is orbax's AtomicRenameTemporaryPath.finalize still the commit?)", stopped, p)
    ckpt = tmp_path / "run" / "checkpoints"
    assert sorted(q.name for q in ckpt.iterdir()) == ["10", "20.orbax-checkpoint-tmp"]
    assert (ckpt / "20.orbax-checkpoint-tmp" / "state").is_dir()      # written, not committed
    p.kill()
    assert p.wait(timeout=60) == -signal.SIGKILL
    r = jaxlearn(*TRAIN, "--out", "run", "--samples", "0", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"ignoring {Path('run') / 'checkpoints' / '20.orbax-checkpoint-tmp'}: an unfinished checkpoint write" in r.stdout, r.stdout
    assert f"resuming from the checkpoint at step 10 ({Path('run') / 'checkpoints' / '10'})" in r.stdout, r.stdout
    assert not list(ckpt.glob("*.orbax-checkpoint-tmp*")) and saved_steps(ckpt) == [20, 30, 40]
    assert_same_run(tmp_path / "run", finished[0] / "run")


def test_ctrl_c_then_resume(tmp_path, finished):
    """Ctrl-C (SIGINT) mid-run saves the current step and says so; the rerun resumes from it and ends with the
    parameters, optimizer state and history of the uninterrupted run."""
    p = start(*TRAIN, "--out", "run", "--samples", "0", cwd=tmp_path)
    ckpt = tmp_path / "run" / "checkpoints"
    wait_for("the first checkpoint", lambda: (ckpt / "10").is_dir(), p)
    time.sleep(0.03)     # into the next chunk of steps, where most of a run's time goes
    assert p.poll() is None, "the run finished before the interrupt"
    p.send_signal(signal.SIGINT)
    assert p.wait(timeout=120) == 130, (tmp_path / "stderr.txt").read_text()[-2000:]
    last = saved_steps(ckpt)[-1]
    assert 10 <= last < 40, last
    err = (tmp_path / "stderr.txt").read_text()
    assert f"jaxlearn: interrupted; the newest checkpoint is step {last} in {Path('run') / 'checkpoints'}" in err, err
    r = jaxlearn(*TRAIN, "--out", "run", "--samples", "0", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"resuming from the checkpoint at step {last}" in r.stdout, r.stdout
    assert_same_run(tmp_path / "run", finished[0] / "run")
