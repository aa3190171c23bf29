"""tune's study, on Optuna (Akiba et al. 2019): its storage (a journal file in
the run folder by default, or any database Optuna's RDBStorage takes,
--storage, where every worker on every machine adds its trials and reads
everyone else's; secrets kept out of every message), the study opened or
created with its settings, and the bookkeeping of its trials: what became of
each (trial_kind), the lost ones found (fail_lost) and queued again
(retry_missing), the surplus and duplicate ones withdrawn (claim).

Trials are read and written through Optuna's public API and the storage
charlstm opened (trial_id, fail_lost's storage): no private attribute of
Optuna's is read."""
from __future__ import annotations

import contextlib
import os
import re
import socket
import time

from ...errors import CharlstmError

HOST = socket.gethostname()
HEARTBEAT_S = 20.0          # a running trial's worker says it is alive this often
LOST_AFTER_S = 300.0        # ... and a trial not heard of for this long is lost
PRUNE_FROM_PCT = 30         # trials are pruned from 30% of their budget...
PRUNE_UNTIL_PCT = 70        # ...to 70%: later there is little time to save, and a trial
                            # near the best was seen pruned at 90% against two others
PRUNE_MIN_TRIALS = 3        # the median of at least three finished trials at that point
STATES_DONE = ("COMPLETE", "PRUNED")


def need_optuna():
    try:
        import optuna
    except ImportError:
        from ...errors import install_hint
        raise CharlstmError("charlstm tune needs Optuna, an optional extra: install it with "
                            f"{install_hint('tune')}") from None
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    import warnings
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


SECRET_KEYS = ("password", "passwd", "pwd", "secret", "token", "sslpassword", "sslkey",
               "api_key", "apikey", "key")


def redact(url: str) -> str:
    """A storage URL without its secrets, for messages and reports: the
    password of user:password@host (one holding an unescaped '@' or '/'
    included: the host is what follows the last '@') and the values of
    password=, token=, ... in its query."""
    from urllib.parse import parse_qsl, urlencode
    if "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    if "@" in rest:
        cred, after = rest.rsplit("@", 1)
        rest = f"{cred.split(':', 1)[0]}:***@{after}" if ":" in cred else rest
    if "?" in rest:
        base, query = rest.split("?", 1)
        frag = ""
        if "#" in query:
            query, frag = query.split("#", 1)
            frag = "#" + frag
        pairs = [(k, "***" if k.lower() in SECRET_KEYS else v)
                 for k, v in parse_qsl(query, keep_blank_values=True)]
        rest = f"{base}?{urlencode(pairs, safe='*')}{frag}"
    return f"{scheme}://{rest}"


def scrub(message: str, url: str | None) -> str:
    """A message with every secret of url (and url itself) replaced by its
    redacted form: database drivers quote the URL or its parts in errors."""
    if not url or "://" not in url:
        return message
    from urllib.parse import parse_qsl, unquote, urlsplit
    message = message.replace(url, redact(url))
    secrets = []
    rest = url.split("://", 1)[1]
    if "@" in rest:
        cred = rest.rsplit("@", 1)[0]
        if ":" in cred:
            secrets.append(cred.split(":", 1)[1])
    try:
        secrets += [v for k, v in parse_qsl(urlsplit(url).query) if k.lower() in SECRET_KEYS]
    except ValueError:
        pass
    import re
    parts = {x for s in secrets for x in (s, unquote(s))}
    parts |= {p for x in list(parts) for p in re.split(r"[@:/?#&]", x)}  # a driver that cut
    for sec in sorted((x for x in parts if len(x) >= 3), key=len, reverse=True):  # the URL
        message = message.replace(sec, "***")                    # at an '@' quotes a piece
    return message


def _with_driver(url: str) -> str:
    """postgresql://… goes through psycopg (version 3, in the tune extra)
    unless psycopg2 is installed, which SQLAlchemy would pick by default."""
    if url.startswith(("postgresql://", "postgres://")):
        import importlib.util
        if importlib.util.find_spec("psycopg2") is None:
            return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


@contextlib.contextmanager
def reading_study(url: str | None, run_dir: str):
    """Errors of Optuna reading a study's storage (a damaged or crafted
    journal, a database of another Optuna version) as one line."""
    try:
        yield
    except CharlstmError:
        raise
    except (KeyError, ValueError, TypeError, AttributeError, IndexError, RecursionError) as e:
        where = redact(url) if url else os.path.join(run_dir, "study.log")
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise CharlstmError(scrub(f"the study in {where} does not read ({type(e).__name__}"
                                  + (f": {first}" if first else "") + "); it is damaged or "
                                  "was not written by charlstm tune: give another --out-dir "
                                  "or --storage", url)) from None


def check_storage(url: str | None, run_dir: str, inputs: dict) -> None:
    """Up front, under files.check_output's rules: a journal file (the run
    folder's, or one named by --storage) or an SQLite file is a tune study's
    own or new; never the training text or any other file."""
    from ... import files
    if url is None or "://" not in url:
        path = url or os.path.join(run_dir, "study.log")
        own = url is None and os.path.isfile(path) and os.path.getsize(path) == 0
        if not own:                              # (an empty journal of our own run folder:
            files.check_output(path, "journal",  # its creation was cut short)
                               option="--storage" if url else "--out-dir",
                               inputs=inputs, continuing=True)
    elif re.match(r"sqlite(\+\w+)?:///", url, re.I):        # sqlite, sqlite+pysqlite, ...
        path = url.split(":///", 1)[1].split("?", 1)[0]
        if path and path != ":memory:":
            files.check_output(path, "sqlite", option="--storage", inputs=inputs,
                               continuing=True)


def open_storage(url: str | None, run_dir: str):
    """Optuna's storage: a journal file in the run folder (no server needed;
    processes on this machine share it through a lock file), another journal
    file named by a path, or a database URL (postgresql://, mysql://,
    sqlite:///) through SQLAlchemy. check_storage has checked it."""
    from ... import files
    optuna = need_optuna()
    if url is None or "://" not in url:
        from optuna.storages.journal import JournalFileBackend, JournalStorage
        path = url or os.path.join(run_dir, "study.log")
        files.make_folder(os.path.dirname(os.path.abspath(path)))
        try:
            with reading_study(url, run_dir):       # the journal is replayed here
                return JournalStorage(JournalFileBackend(path))
        except OSError as e:
            raise CharlstmError(f"cannot open the study's journal {path}: "
                                f"{os.strerror(e.errno).lower() if e.errno else e}") from None
        except (ValueError, UnicodeDecodeError) as e:
            from ...file_kinds import sniff
            raise CharlstmError(f"--storage {path} is {sniff(path)}, not a tune study's "
                                f"journal ({type(e).__name__}); give another") from None
    try:
        for attempt in range(5):
            try:
                return optuna.storages.RDBStorage(_with_driver(url),
                                                  engine_kwargs={"pool_pre_ping": True})
            except Exception as e:
                # Two workers meeting a new database both create Optuna's tables;
                # the second one's CREATE fails (duplicate key, already exists).
                # Once the first has made them, they are there to use.
                racing = "IntegrityError" in type(e).__name__ or "already exists" in str(e) \
                    or "UniqueViolation" in str(e)
                if not racing or attempt == 4:
                    raise
                time.sleep(0.5 + attempt)
    except ImportError as e:
        from ...errors import install_hint
        raise CharlstmError(scrub(f"--storage {redact(url)}: the database driver is missing "
                                  f"({e}); for PostgreSQL, {install_hint('tune')} installs "
                                  "psycopg; for MySQL, pip install pymysql and give "
                                  "mysql+pymysql://", url)) from None
    except Exception as e:                       # sqlalchemy's errors, bad URLs
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        rest = url.split("://", 1)[1]
        hint = ("; write an '@', ':' or '/' in a password percent-encoded (%40, %3A, %2F)"
                if rest.count("@") > 1 else "")
        raise CharlstmError(scrub(f"cannot open the study at --storage {redact(url)}: {first}"
                                  + hint, url)) from None


def _sampler(seed: int | None = None):
    optuna = need_optuna()
    # constant_liar: a trial still running counts as a poor result, so that
    # parallel workers do not all try the same corner of the space.
    return optuna.samplers.TPESampler(n_startup_trials=5, multivariate=True,
                                      constant_liar=True, seed=seed)


def _pruner():
    optuna = need_optuna()
    return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=PRUNE_FROM_PCT,
                                       n_min_trials=PRUNE_MIN_TRIALS)


def load_study(storage, name: str):
    """The study `name` in `storage`, with tune's sampler and pruner."""
    return need_optuna().load_study(study_name=name, storage=storage, sampler=_sampler(),
                                    pruner=_pruner())


def trial_id(storage, study_name: str, number: int) -> int:
    """The id under which `storage` keeps trial `number` of the study."""
    return storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name(study_name), number)


def open_study(storage, name: str, settings: dict | None = None, log=lambda m: None):
    """Load or create the study. `settings` (the text's digest, the trial
    budget, the space asked for and the space resolved) is stored with a new
    study; an existing one must have been asked for with the same, or the
    trials would not be comparable. Returns (study, its stored settings)."""
    optuna = need_optuna()
    try:
        study = optuna.create_study(study_name=name, storage=storage, direction="minimize",
                                    sampler=_sampler(), pruner=_pruner(), load_if_exists=True)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CharlstmError(f"cannot open study {name!r}: {first}") from None
    saved = study.user_attrs.get("charlstm")
    for _ in range(50):                    # another worker is creating it: its settings
        if saved is not None or settings is not None:   # follow in a moment
            break
        time.sleep(0.1)
        saved = optuna.load_study(study_name=name, storage=storage).user_attrs.get("charlstm")
    if saved is None and settings is not None:
        study.set_user_attr("charlstm", settings)
        time.sleep(0.2)                    # two workers creating it at once: the last wins,
        saved = optuna.load_study(study_name=name, storage=storage).user_attrs["charlstm"]
    if saved is None:
        raise CharlstmError(f"study {name!r} was not made by charlstm tune")
    if settings is not None:
        check_same(saved, settings, name)
    return study, saved


def check_same(saved: dict, asked: dict, name: str) -> None:
    why = []
    if saved["text_sha256"] != asked["text_sha256"]:
        why.append(f"it searches another text ({saved['text_chars']:,} characters, sha256 "
                   f"{saved['text_sha256'][:12]}…)")
    if saved["trial_minutes"] != asked["trial_minutes"]:
        why.append(f"its trials have {saved['trial_minutes']:g} minutes, not "
                   f"{asked['trial_minutes']:g}")
    if saved["val_frac"] != asked["val_frac"]:
        why.append(f"it holds out {saved['val_frac']:g} of the text, not {asked['val_frac']:g}")
    if saved["requested"] != asked["requested"]:
        diff = sorted(k for k in set(saved["requested"]) | set(asked["requested"])
                      if saved["requested"].get(k) != asked["requested"].get(k))
        why.append("its space differs in " + ", ".join(diff))
    if why:
        raise CharlstmError(f"study {name!r} was begun with other settings: " + "; ".join(why)
                            + ". Run the command it was begun with to go on, or give a new "
                            "--study name (or --out-dir, for the local study)")


def trial_kind(t) -> str:
    """'complete', 'pruned', 'running', 'waiting', 'diverged' (complete, with
    the loss of its last finite model, so that the sampler learns from it), or
    why a failed trial failed: 'interrupted', 'lost', 'withdrawn', 'failed'."""
    state = t.state.name
    if state == "COMPLETE" and t.user_attrs.get("diverged"):
        return "diverged"
    if state == "FAIL":
        for why in ("withdrawn", "interrupted", "lost", "diverged"):
            if t.user_attrs.get(why):
                return why
        return "failed"
    return state.lower()


def retry_missing(study, log=lambda m: None) -> list[int]:
    """Queue again, with the same settings, every trial that was interrupted or
    lost and has not been queued again already. Returns their numbers."""
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    again = [t for t in trials if trial_kind(t) in ("interrupted", "lost")
             and t.number not in retried and t.params]
    for t in again:
        study.enqueue_trial(t.params, user_attrs={"retry_of": t.number,
                                                   "queued_as": f"retry:{t.number}"})
    if again:
        log("trained again, as they were cut short: trial "
            + ", ".join(str(t.number) for t in again))
    return [t.number for t in again]


def fail_lost(study, storage, now: float | None = None) -> list[int]:
    """Mark failed (as 'lost') every running trial whose worker is gone: a
    process of this machine that no longer runs, or any worker not heard
    from for LOST_AFTER_S (killed with -9, or its machine went down).
    storage: the one the study was opened on (Optuna has no public way from
    a study to its storage, so its opener passes it)."""
    from ...files import pid_alive
    now = time.time() if now is None else now
    study_id = storage.get_study_id_from_name(study.study_name)
    lost = []
    for t in study.get_trials(deepcopy=False):
        if t.state.name != "RUNNING":
            continue
        w = t.system_attrs.get("charlstm:worker")
        if w is None:
            start = t.datetime_start.timestamp() if t.datetime_start else now
            gone = now - start > LOST_AFTER_S
        else:
            gone = ((w["host"] == HOST and not pid_alive(w["pid"]))
                    or now - w["alive"] > LOST_AFTER_S)
        if gone:
            try:
                tid = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
                storage.set_trial_user_attr(tid, "lost", True)
                storage.set_trial_state_values(tid, need_optuna().trial.TrialState.FAIL)
                lost.append(t.number)
            except Exception:          # finished in the meantime, or another worker did it
                pass
    return lost


def claim(study, trial, target: int | None) -> str | None:
    """Whether a trial just asked for may run; else why not. Optuna numbers
    trials in the order they were asked for, whoever asked, so the trials that
    count are the finished ones and the running ones asked for before this
    one: once `target` of them exist, this one is surplus. A queued trial
    (the defaults, a retry) popped twice by two workers runs once: the one
    asked for first."""
    trials = study.get_trials(deepcopy=False)
    me = trial.number
    key = trial.user_attrs.get("queued_as")
    if key and any(t.number < me and t.user_attrs.get("queued_as") == key
                   and trial_kind(t) != "withdrawn" for t in trials):
        return "duplicate"
    if target is not None:
        ahead = sum(1 for t in trials if t.number != me and (
            t.state.name in STATES_DONE or (t.state.name == "RUNNING" and t.number < me)))
        if ahead >= target:
            return "surplus"
    return None


def count_done(study) -> int:
    return sum(1 for t in study.get_trials(deepcopy=False) if t.state.name in STATES_DONE)
