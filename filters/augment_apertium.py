"""Apertium kept running: each mode's module chain started once per process, in null-flush mode.

Starting an Apertium mode is most of its cost for a batch of short texts (a dozen programs
load their dictionaries and rules). :class:`ApertiumChain` starts a mode's modules once, as
``apertium-wblank-mode -z`` writes them, and keeps them running: each text goes in as one
NUL-terminated unit, and every module, in null-flush mode (``-z``), finishes the unit, writes
it out, flushes and resets its state at the NUL (the way apertium-apy keeps pipelines). A
text's translation therefore depends on that text alone, not on what the chain translated
before it, nor on how texts were batched: it equals ``apertium -u MODE`` run on that text
alone in a fresh process (``tests/filters/test_augment_apertium.py`` checks both, on all three
pivots, in both directions).

Unknown-word marks. A chain runs its mode's generator with marks on (``lt-proc -g``, what
``apertium`` without ``-u`` runs): ``*`` before a word the analyser did not know (passed through
untranslated), ``@`` before a lemma the bilingual dictionary lacked, ``#`` before a lemma the
generator could not inflect. :func:`unmark` removes them and names the marked words; the steps
after generation (post-generation, ``lt-proc -p``, and the like) run after that, in a second
kept chain, on the unmarked stream, so the text is exactly ``apertium -u``'s (with the marks in
place, post-generation would write "a elefantox" for "an elefantox"). The marks are told apart
from the text's own ``*``, ``#`` and ``@`` because those never reach a chain: :func:`hide_literals`
swaps them for private-use characters that no analyser knows (like ``*``, ``#`` and ``@``, they
pass as blanks) and they are put back after. A round trip's result is a :class:`Translation`: the
text, and the words of the back leg's marks that are not words of the round trip's input
(``untranslated``): pivot-language words that came back (``dosieraj``), never the input's own
unknown words (names, placeholders) that went through both legs unchanged.

The plain-text formatters that the ``apertium`` script runs around a mode
(``apertium-destxt``, ``apertium-retxt``) do not keep NUL separators, so their rules are
applied here, in Python: :func:`deformat` and :func:`reformat`; the tests compare them with
the real programs on random texts. One difference is deliberate: ``apertium-destxt`` moves a
blank run longer than 8192 characters into a temporary file; :func:`deformat` keeps it inline
(the modules pass blanks through either way).

:class:`ApertiumRoundTrip` runs English -> pivot -> English through two kept chains at the
same time: a thread feeds the texts, a second moves each unit from the first chain to the
second (reformatted and deformatted, as ``apertium -u A | apertium -u B`` does), and the
caller reads the results.

Chains are shared within a process (:func:`acquire`, :func:`release`): a caller borrows an
idle chain of its mode or starts one, so a worker holds as many chains of a mode as it used
at the same time (one per pivot direction for a stage's ``DoFn``), whatever the number of
``DoFn`` instances; :func:`close_idle` stops them (the stage's ``teardown``; at exit anyway).
The two chains of the eng-spa pair hold about 380 MB (their processes' resident memory) while
they run.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import subprocess
import tempfile
import threading
import weakref
from collections import Counter
from typing import Callable, Sequence

__all__ = ["deformat", "reformat", "mode_script", "split_generation", "hide_literals", "unmark", "Translation",
           "ApertiumChain", "ApertiumRoundTrip", "apertium_datadir", "acquire", "release", "close_idle",
           "chains_started"]

_ESC = re.compile(r"([$/<>@\[\\\]^{}])")
_BLANK = re.compile(r"[ \t\n\r~]+")
_UNESC = re.compile(r"\\([$/<>@\[\\\]^{}])|\.\[\]|[\[\]\x00]")
_STARTED: Counter = Counter()  # chains started in this process, per mode
_IDLE: dict[tuple[str, str | None], list[ApertiumChain]] = {}
_IDLE_LOCK = threading.Lock()
_BASH_JOB = re.compile(r"(line \d+: )\d+ ")
#: seconds a chain may go without producing output while a unit is pending
STALL_S = 600.0
# A generator's mark (escaped or not: lt-proc -g writes "\@lemma") and the word after it; any
# other escape is kept as it is (so an escaped backslash before a mark is not read as "\\*").
_MARK = re.compile(r"\\(?![*#@])(?s:.)|\\?([*#@])(\w*)")
_LITERALS = "*#@"
_PUA = (0xE000, 0xF8FF)
_WORD = re.compile(r"\w+")
# Input of at most this many bytes is written without a writer thread: a pipe holds at least one
# page (Linux gives a pipe a single page when a user has many), so the write cannot block even if
# the chain reads nothing until its output is read (the post-generation chain gets many small
# batches).
_INLINE_BYTES = 4096


class Translation(str):
    """A translated text that also names the words Apertium left untranslated.

    Attributes:
        untranslated: the words of the back leg's unknown-word marks (``*``, ``@``, ``#``) that
            are not words of the round trip's input: pivot-language words in the result.
    """

    untranslated: tuple[str, ...]

    def __new__(cls, text: str, untranslated: Sequence[str] = ()) -> Translation:
        self = super().__new__(cls, text)
        self.untranslated = tuple(untranslated)
        return self


def hide_literals(text: str) -> tuple[str, str]:
    """``text`` with its own ``*``, ``#`` and ``@`` swapped for private-use characters it does
    not contain, and those three characters (``""`` when it has none of them): the generator's
    marks are then the only ``*``, ``#`` and ``@`` in a chain's output."""
    if not any(c in text for c in _LITERALS):
        return text, ""
    free = []
    for cp in range(*_PUA):
        if chr(cp) not in text:
            free.append(chr(cp))
            if len(free) == len(_LITERALS):
                key = "".join(free)
                return text.translate(str.maketrans(_LITERALS, key)), key
    raise ValueError("text holds nearly every private-use character: no stand-ins left for '*', '#' and '@'")


def show_literals(text: str, key: str) -> str:
    """Undo :func:`hide_literals` (``key``: its second value)."""
    return text.translate(str.maketrans(key, _LITERALS)) if key else text


def unmark(stream: str) -> tuple[str, list[str]]:
    """A generator's output (``lt-proc -g``, stream format) without its unknown-word marks,
    which is ``lt-proc -n``'s output, and the marked words (mark included: ``*dosieraj``).
    Only right when the text's own ``*``, ``#`` and ``@`` were hidden (:func:`hide_literals`)."""
    marked: list[str] = []

    def drop(m: re.Match[str]) -> str:
        if m.group(1) is None:
            return m.group()
        marked.append(m.group(1) + m.group(2))
        return m.group(2)

    if "*" not in stream and "#" not in stream and "@" not in stream:
        return stream, marked
    return _MARK.sub(drop, stream), marked


def untranslated_words(marked: Sequence[str], source: str) -> tuple[str, ...]:
    """The marked words (without their mark) that are not words of ``source``, case aside.

    Underscores do not count at a word's ends (an analyser takes ``__init__``'s leading ones
    for punctuation and marks ``init__``), and the parts of ``source``'s ``snake_case`` words
    are its words too (the analyser may mark ``yol_`` and ``ögesi`` of ``yol_ögesi``)."""
    if not marked:
        return ()
    own: set[str] = set()
    for w in _WORD.findall(source.casefold()):
        own.add(w.strip("_"))
        if "_" in w:
            own.update(w.split("_"))
    out = []
    for m in marked:
        word = m[1:]
        if word.strip("_") and word.casefold().strip("_") not in own and word not in out:
            out.append(word)
    return tuple(out)


def split_generation(script: str) -> tuple[str, str | None]:
    """A mode's pipeline cut after its generator (the step that takes the script's ``$1``): the
    part up to it, and the steps after it (post-generation), or None when there are none."""
    steps = script.strip().split(" | ")
    gen = [i for i, step in enumerate(steps) if "$1" in step]
    if len(gen) != 1 or gen[0] == len(steps) - 1:
        return script, None
    return " | ".join(steps[:gen[0] + 1]), " | ".join(steps[gen[0] + 1:])


def _word(seg: str) -> str:
    return _ESC.sub(r"\\\1", seg.replace("\0", "")) if seg else seg


def deformat(text: str) -> str:
    """``apertium-destxt``'s stream for a plain text: special characters escaped, blank runs
    other than one space as superblanks (``[\\n]``), a forced sentence end (``.[]``) before a
    blank line and at the end of the text, NUL characters dropped."""
    out: list[str] = []
    pos, n = 0, len(text)
    for m in _BLANK.finditer(text):
        out.append(_word(text[pos:m.start()]))
        run = m.group()
        pos = m.end()
        if pos == n or "\n\n" in run or "\r\n\r\n" in run:
            out.append(".[]")
        out.append(" " if run == " " else f"[{run}]")
        if pos == n:
            return "".join(out)
    out.append(_word(text[pos:]))
    out.append(".[]")
    return "".join(out)


def reformat(stream: str) -> str:
    """``apertium-retxt``: escapes undone, superblank brackets and forced sentence ends removed."""
    return _UNESC.sub(lambda m: m.group(1) or "", stream)


def apertium_datadir() -> str:
    """Where the modes live: ``$APERTIUM_DATADIR``, as the ``apertium`` script reads it."""
    return os.environ.get("APERTIUM_DATADIR", "/usr/share/apertium")


def mode_script(mode: str, datadir: str | None = None) -> str:
    """The shell pipeline of ``mode`` in null-flush mode (``apertium-wblank-mode -z``)."""
    path = os.path.join(datadir or apertium_datadir(), "modes", f"{mode}.mode")
    exe = shutil.which("apertium-wblank-mode")
    if exe is None or not os.path.isfile(path):
        raise RuntimeError(f"Apertium mode {mode!r} not found (expected {path} and apertium-wblank-mode on PATH)")
    return subprocess.run([exe, "-z", path], capture_output=True, text=True, check=True, timeout=60).stdout


def _utf8_env() -> dict[str, str]:
    env = dict(os.environ)
    if "utf" not in (env.get("LC_ALL") or env.get("LC_CTYPE") or env.get("LANG") or "").lower().replace("-", ""):
        env["LC_ALL"] = "C.UTF-8"  # the apertium script insists on a UTF-8 locale too
    return env


def _stop(proc: subprocess.Popen, owner: int, wait_s: float = 10.0) -> None:
    """End a chain: its input closed so each module finishes and exits (waited for, so their CPU
    time is accounted to this process), or, after ``wait_s`` (at once when 0), killed. Only the
    process that started it does (a forked child leaves its parent's chains alone)."""
    if os.getpid() != owner:
        return
    if wait_s <= 0:
        _kill(proc)
    try:
        if proc.stdin is not None:
            proc.stdin.close()
    except (OSError, ValueError):
        pass
    try:
        proc.wait(timeout=max(wait_s, 0.001))
    except subprocess.TimeoutExpired:
        pass
    _kill(proc)  # nothing is left when the chain exited
    proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, 9)  # the whole chain: it runs in a session of its own
    except OSError:
        pass


class ApertiumChain:
    """One Apertium mode's module chain, started on first use and kept running.

    The chain runs the mode up to its generator, with unknown-word marks (see the module
    docstring); the steps after generation run in a second kept chain that this one owns
    (:meth:`finish`). ``run(units)`` writes each unit (already in Apertium's stream format, see
    :func:`deformat`) NUL-terminated and returns the chain's output for each, in the stream
    format: marked, before post-generation. A chain that dies or stalls is stopped and raises
    :class:`RuntimeError` (naming the mode and its error output); the next call starts a fresh
    one.

    Args:
        mode: the Apertium mode (``eng-spa``).
        datadir: Apertium's data directory (default: :func:`apertium_datadir`).
    """

    def __init__(self, mode: str, datadir: str | None = None, _post: bool = False) -> None:
        self.mode = mode
        self._datadir = datadir
        self._is_post = _post  # the steps after the generator (owned by the mode's main chain)
        self._post: ApertiumChain | None = None
        self._scripts: tuple[str, str | None] | None = None
        self._proc: subprocess.Popen | None = None
        self._err = None
        self._buf = b""
        self._lock = threading.Lock()
        self.starts = 0  # chains started (1 for a healthy process)
        self.units = 0  # units translated
        self._finalizer = None

    def __getstate__(self) -> dict:
        return {"mode": self.mode, "_datadir": self._datadir, "_is_post": self._is_post}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["mode"], state["_datadir"], state.get("_is_post", False))

    def _split(self) -> tuple[str, str | None]:
        if self._scripts is None:
            self._scripts = split_generation(mode_script(self.mode, self._datadir))
        return self._scripts

    def _start(self) -> subprocess.Popen:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        self.close()
        main, post = self._split()
        script = post if self._is_post else main
        if script is None:
            raise RuntimeError(f"Apertium mode {self.mode!r} has no steps after its generator")
        self._err = tempfile.TemporaryFile()
        # -g and "" are the script's $1 and $2: what `apertium` passes without -u (unknown-word
        # marks on; finish() removes them before the steps after generation, as -u would)
        self._proc = subprocess.Popen(["bash", "-c", script, "apertium", "-g", ""], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=self._err, env=_utf8_env(),
                                      start_new_session=True)
        self._buf = b""
        self.starts += 1
        _STARTED[f"{self.mode} post-generation" if self._is_post else self.mode] += 1
        self._finalizer = weakref.finalize(self, _stop, self._proc, os.getpid())
        return self._proc

    def close(self, wait_s: float = 10.0) -> None:
        """Stop the chain (a later call starts a new one): its input is closed so every module
        exits (and its CPU time is accounted to this process); one that lingers is killed."""
        fin, self._finalizer = self._finalizer, None
        info = fin.detach() if fin is not None else None
        if info is not None:  # only one caller gets it
            _stop(*info[2], wait_s=wait_s)
        self._proc = None
        if self._post is not None:
            self._post.close(wait_s)
        if self._err is not None:
            self._err.close()
            self._err = None

    def _error(self, what: str) -> RuntimeError:
        msg = ""
        if self._err is not None:
            self._err.seek(0)
            msg = self._err.read().decode("utf-8", "replace").strip()[-300:]
            msg = _BASH_JOB.sub(r"\1", msg)  # bash names a killed module by its process id
        self.close(wait_s=0)
        return RuntimeError(f"apertium {self.mode} (null-flush chain) {what}" + (f": {msg}" if msg else ""))

    def _write(self, proc: subprocess.Popen, data: bytes, failed: list) -> None:
        try:
            proc.stdin.write(data)  # type: ignore[union-attr]
            proc.stdin.flush()  # type: ignore[union-attr]
        except (OSError, ValueError) as exc:  # the chain died (or was stopped); the reader reports it
            failed.append(exc)

    def _read(self, proc: subprocess.Popen, n: int, each: Callable[[list[str]], None] | None = None) -> list[str]:
        """``n`` NUL-terminated units from the chain's output."""
        out: list[str] = []
        fd = proc.stdout.fileno()  # type: ignore[union-attr]
        buf = self._buf
        while len(out) < n:
            if b"\0" in buf:
                *units, buf = buf.split(b"\0")
                if len(out) + len(units) > n:  # never happens in null-flush mode; kept for the next call
                    buf = b"\0".join([*units[n - len(out):], buf])
                    units = units[:n - len(out)]
                got = [u.decode("utf-8", "surrogateescape") for u in units]
                out.extend(got)
                if each is not None:
                    each(got)
            if len(out) >= n:
                break
            ready, _, _ = select.select([fd], [], [], STALL_S)
            if not ready:
                raise self._error(f"produced nothing for {STALL_S:.0f} s")
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise self._error(f"exited with {proc.wait()}")
            buf += chunk
        self._buf = buf
        return out

    def run(self, units: Sequence[str], each: Callable[[list[str]], None] | None = None) -> list[str]:
        """The chain's output for each unit (stream format), in order; ``each`` (optional) is
        called with the outputs as they arrive (a list per read)."""
        if not units:
            return []
        with self._lock:
            proc = self._start()
            failed: list = []
            writer = None
            data = b"".join(u.encode("utf-8", "surrogatepass") + b"\0" for u in units)
            if len(data) <= _INLINE_BYTES:  # fits the empty input pipe: written at once
                self._write(proc, data, failed)
            else:  # the chain's output could fill its pipe while this one still writes
                writer = threading.Thread(target=self._write, args=(proc, data, failed), daemon=True)
                writer.start()
            try:
                out = self._read(proc, len(units), each)
            except BaseException:
                self.close(wait_s=0)
                raise
            finally:
                if writer is not None:
                    writer.join()
            self.units += len(units)
            return out

    def finish(self, outputs: Sequence[str]) -> list[tuple[str, list[str]]]:
        """:meth:`run`'s outputs made final: for each, the plain text (still with the stand-ins of
        :func:`hide_literals`) as ``apertium -u`` writes it, and the marked words. The mode's
        steps after generation run here, on the unmarked streams, in the chain this one owns."""
        pairs = [unmark(u) for u in outputs]
        streams = [p[0] for p in pairs]
        if streams and self._split()[1] is not None:
            if self._post is None:
                self._post = ApertiumChain(self.mode, self._datadir, _post=True)
                self._post._scripts = self._scripts
            streams = self._post.run(streams)
        return [(reformat(st), marks) for st, (_, marks) in zip(streams, pairs)]

    def translate(self, texts: Sequence[str]) -> list[Translation]:
        """Plain texts in, plain translations out (as ``apertium -u MODE`` on each text alone),
        each naming the marked words that are not words of its text (:class:`Translation`)."""
        hidden = [hide_literals(t.strip()) for t in texts]
        out = self.finish(self.run([deformat(h) for h, _ in hidden]))
        return [Translation(show_literals(text, key).strip(), untranslated_words(marks, t))
                for (text, marks), (_, key), t in zip(out, hidden, texts)]


class ApertiumRoundTrip:
    """Two kept chains, one after the other: ``apertium -u A | apertium -u B`` on each text alone.

    Both chains work at the same time: a relay thread hands each unit of the first chain's
    output to the second as soon as it arrives. Each result is a :class:`Translation` whose
    ``untranslated`` names the words the second chain marked (unknown, untranslated lemma,
    generation error) that are not words of the text that went in.
    """

    def __init__(self, forward: ApertiumChain, backward: ApertiumChain) -> None:
        self.forward = forward
        self.backward = backward

    def run(self, texts: Sequence[str],
            each: Callable[[int, list[Translation]], None] | None = None) -> list[Translation]:
        """The round trip of each text, in order; ``each(start, results)`` (optional) is called
        with the results as they arrive (``results`` are those of ``texts[start:start + len]``),
        so the caller can work on them while the chains translate the rest."""
        if not texts:
            return []
        n = len(texts)
        hidden = [hide_literals(t.strip()) for t in texts]
        back_keys: list[str] = []  # each pivot text's stand-ins, appended by the relay in order
        with self.backward._lock:
            back = self.backward._start()
            failed: list = []

            def relay(units: list[str]) -> None:
                if failed:
                    return
                parts = []
                for text, _ in self.forward.finish(units):
                    pivot, key = hide_literals(show_literals(text, hidden[len(back_keys)][1]).strip())
                    back_keys.append(key)
                    parts.append(deformat(pivot) + "\0")
                try:
                    back.stdin.write("".join(parts).encode("utf-8", "surrogatepass"))
                    back.stdin.flush()
                except (OSError, ValueError) as exc:  # the second chain died; its reader reports it
                    failed.append(exc)

            errors: list[BaseException] = []

            def forward() -> None:
                try:
                    self.forward.run([deformat(h) for h, _ in hidden], each=relay)
                except BaseException as exc:  # noqa: BLE001 - re-raised by the caller's thread
                    errors.append(exc)
                    self.backward.close(wait_s=0)  # unblocks the reader below

            results: list[Translation] = []

            def arrived(units: list[str]) -> None:
                start = len(results)
                got = [Translation(show_literals(text, back_keys[k]).strip(), untranslated_words(marks, texts[k]))
                       for k, (text, marks) in enumerate(self.backward.finish(units), start)]
                results.extend(got)
                if each is not None:
                    each(start, got)

            relayer = threading.Thread(target=forward, daemon=True)
            relayer.start()
            try:
                self.backward._read(back, n, arrived)
            except BaseException:
                self.backward.close(wait_s=0)  # first: a relay blocked on a full pipe gets an error
                relayer.join()
                if errors:
                    raise errors[0] from None
                raise
            relayer.join()
            if errors:
                raise errors[0]
            self.backward.units += n
        return results


def acquire(mode: str, datadir: str | None = None) -> ApertiumChain:
    """A kept chain of ``mode`` for the caller's exclusive use: an idle one of this process, else
    a new one (started on first use). Give it back with :func:`release`.

    Chains are shared by everything in a process that translates (several ``DoFn`` instances,
    the pivots' threads), so a process holds as many chains of a mode as it ever used at the
    same time, never one per idle caller."""
    with _IDLE_LOCK:
        idle = _IDLE.get((mode, datadir))
        if idle:
            return idle.pop()
    return ApertiumChain(mode, datadir)


def release(chain: ApertiumChain) -> None:
    """Hand a chain back for the next :func:`acquire` of its mode."""
    with _IDLE_LOCK:
        _IDLE.setdefault((chain.mode, chain._datadir), []).append(chain)


def close_idle(modes: Sequence[str] | None = None) -> int:
    """Stop the idle chains (of ``modes``, else all) of this process; the number stopped."""
    with _IDLE_LOCK:
        keys = [k for k in _IDLE if modes is None or k[0] in modes]
        chains = [c for k in keys for c in _IDLE.pop(k)]
    for c in chains:
        c.close()
    return len(chains)


def chains_started(mode: str) -> int:
    """How many chains of ``mode`` this process has started (a test and benchmark figure)."""
    return _STARTED[mode]
