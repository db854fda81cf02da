"""Secrets: ``vault:NAME`` references in the inventory, values in one Ansible Vault file.

The vault file (``vault = "secrets.vault"`` in hosts.toml) holds ``name: value``
pairs as YAML, like the older system's group_vars, or as TOML. It is unlocked at
most once per run and only when a reference is first resolved, so commands that
need no secret never ask for a password. The password comes from, in order: a
password file, the environment variable ``VMSTATION_VAULT_PASSWORD``, an
interactive prompt (only at a terminal).

A value is handed out as a ``Secret`` whose str/repr/format are ``***``;
``reveal()`` is the one way to the value, used where it is written to sudo's
stdin. ``redact`` is the choke point that logging passes text through.
"""

from __future__ import annotations

import difflib
import getpass
import hmac
import os
import shlex
import subprocess
import sys
import tempfile
import threading
import tomllib
from collections.abc import Iterable
from pathlib import Path

from vmstation import vault
from vmstation.errors import SecretError
from vmstation.inventory import SECRET_REFERENCE, Inventory

MASK = "***"
PASSWORD_ENV = "VMSTATION_VAULT_PASSWORD"


class Secret:
    """A secret value that prints as ``***`` everywhere; ``reveal()`` returns it."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return MASK

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return MASK

    def __eq__(self, other) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode("utf-8", "surrogateescape"),
                                   other._value.encode("utf-8", "surrogateescape"))

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


class SecretStore:
    """Resolves ``vault:NAME`` references of one inventory; the vault is opened on first use."""

    def __init__(self, vault_path: Path | None, inventory_path: str, password_file: str | Path | None,
                 env: str, prompt: bool):
        self.vault_path, self.inventory_path = vault_path, inventory_path
        self._password_args = (password_file, env, prompt)
        self._secrets: dict[str, Secret] | None = None
        self._lock = threading.Lock()      # hosts run in parallel: one unlock, one prompt

    @classmethod
    def open(cls, inventory: Inventory, password_file: str | Path | None = None, env: str = PASSWORD_ENV,
             prompt: bool = True) -> SecretStore:
        """A store for ``inventory``'s vault. Nothing is read yet."""
        return cls(inventory.vault_path, inventory.path, password_file, env, prompt)

    def resolve(self, reference: str) -> Secret:
        """``vault:NAME`` -> the Secret; SecretError naming the reference and the vault file."""
        match = SECRET_REFERENCE.match(reference) if isinstance(reference, str) else None
        if match is None:
            raise SecretError("not a secret reference like 'vault:NAME' (value not shown)")
        name = match[1]
        secrets = self._unlocked(reference)
        if name not in secrets:
            close = difflib.get_close_matches(name, list(secrets), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise SecretError(f"{self.vault_path}: no secret named {name!r} for reference {reference!r} "
                              f"in {self.inventory_path}{hint}")
        return secrets[name]

    def known(self) -> tuple[Secret, ...]:
        """Every value of the vault once it is unlocked (nothing before): what logging must redact."""
        return tuple(self._secrets.values()) if self._secrets else ()

    def _unlocked(self, reference: str) -> dict[str, Secret]:
        with self._lock:
            if self._secrets is None:
                self._secrets = self._unlock(reference)
            return self._secrets

    def _unlock(self, reference: str) -> dict[str, Secret]:
        if self.vault_path is None:
            raise SecretError(f"{self.inventory_path}: {reference!r} needs a vault file; "
                              'set vault = "secrets.vault" at the top')
        ciphertext = _read_vault_file(self.vault_path)
        password = read_vault_password(*self._password_args, vault_path=self.vault_path)
        try:
            plaintext = vault.decrypt(ciphertext, password)
        except SecretError as exc:
            raise SecretError(f"{self.vault_path}: {exc}") from None
        return parse_secrets(plaintext, str(self.vault_path))


def read_vault_password(password_file: str | Path | None = None, env: str = PASSWORD_ENV, prompt: bool = True,
                        vault_path: Path | str = "the vault") -> Secret:
    """The vault password from the first source that has one: file, environment, terminal prompt."""
    if password_file is not None:
        return _password_from_file(Path(password_file).expanduser())
    if os.environ.get(env):
        return Secret(os.environ[env])
    if prompt and sys.stdin is not None and sys.stdin.isatty():
        return Secret(getpass.getpass(f"Vault password for {vault_path}: "))
    raise SecretError(f"{vault_path}: no vault password: give a password file (--vault-password-file), "
                      f"set {env}, or run at a terminal")


def parse_secrets(plaintext: bytes, where: str) -> dict[str, Secret]:
    """Decrypted vault content (TOML, else YAML) -> name -> Secret. Errors never quote the content."""
    try:
        text = plaintext.decode("utf-8")
    except UnicodeDecodeError:
        raise SecretError(f"{where}: decrypted content is not UTF-8 text") from None
    try:
        pairs = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        pairs = _yaml_pairs(text, where)
    except RecursionError:
        raise SecretError(f"{where}: decrypted content is nested too deeply") from None
    for name, value in pairs.items():
        if not isinstance(value, str):
            raise SecretError(f"{where}: secret {name!r} is not a string; quote its value")
    return {str(name): Secret(value) for name, value in pairs.items()}


def redact(text: str, secrets: Iterable[Secret | str]) -> str:
    """``text`` with every known secret value replaced by ``***`` (longest first, so none leaks in part)."""
    values = {s.reveal() if isinstance(s, Secret) else s for s in secrets} - {""}
    for value in sorted(values, key=len, reverse=True):
        text = text.replace(value, MASK)
    return text


# --- the vault file, for the CLI ----------------------------------------------


def vault_encrypt(path: str | Path, password) -> None:
    """Encrypt a plaintext secrets file in place (atomically)."""
    path = Path(path)
    plaintext = _read_file(path)
    if vault.is_encrypted(plaintext):
        raise SecretError(f"{path}: already encrypted")
    _write_atomically(path, vault.encrypt(plaintext, password))


def vault_view(path: str | Path, password) -> str:
    """The decrypted text of a vault file."""
    path = Path(path)
    try:
        return vault.decrypt(_read_vault_file(path), password).decode("utf-8")
    except SecretError as exc:
        raise SecretError(f"{path}: {exc}") from None
    except UnicodeDecodeError:
        raise SecretError(f"{path}: decrypted content is not UTF-8 text") from None


def vault_edit(path: str | Path, password, editor: str | None = None) -> bool:
    """Decrypt to a private 0600 file, run the editor, re-encrypt atomically; False when nothing changed.

    A missing vault file starts empty. The plaintext lives in a 0700 directory
    (in RAM under /dev/shm where there is one) that is removed afterwards with
    anything the editor left there (swap and backup files).
    """
    path = Path(path)
    original = vault_view(path, password) if path.exists() else ""
    command = _editor_command(editor or os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi")
    with tempfile.TemporaryDirectory(prefix="vmstation-vault-", dir=_memory_dir()) as private:
        plain = Path(private) / path.name
        descriptor = os.open(plain, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(original)
        _run_editor(command, plain, path)
        edited = plain.read_bytes()
    if path.exists() and edited == original.encode("utf-8"):
        return False
    _write_atomically(path, vault.encrypt(edited, password))
    return True


def child_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a child process (an editor, a helper): without the vault password in it."""
    return {k: v for k, v in (os.environ if base is None else base).items() if k != PASSWORD_ENV}


# --- helpers ----------------------------------------------------------------------


def _read_vault_file(path: Path) -> bytes:
    if not path.exists():
        raise SecretError(f"{path}: vault file does not exist (create it with `vmstation vault edit`)")
    data = _read_file(path)
    if not vault.is_encrypted(data):
        raise SecretError(f"{path}: not encrypted; a vault file must be (`vmstation vault encrypt`)")
    return data


def _read_file(path: Path) -> bytes:
    """A regular file's bytes (a FIFO or device is refused, never waited on)."""
    from vmstation.errors import InputError
    from vmstation.values import read_input_file

    try:
        return read_input_file(path)
    except InputError as exc:
        raise SecretError(str(exc)) from None


def _password_from_file(path: Path) -> Secret:
    """The file's content, or, when it is executable, what it prints (Ansible's convention: a script that asks
    a password manager). Either way surrounding whitespace is not the password, and the password is bytes,
    like ansible-vault's: any byte is allowed (surrogateescape keeps it exact)."""
    password = (_password_from_script(path) if path.is_file() and os.access(path, os.X_OK)
                else _read_file(path)).strip()
    if not password:
        raise SecretError(f"vault password file {path} is empty" + (" (it printed nothing)"
                                                                     if os.access(path, os.X_OK) else ""))
    return Secret(password.decode("utf-8", "surrogateescape"))


def _password_from_script(path: Path, timeout: float = 60.0) -> bytes:
    """Run an executable vault password file; its stdout is the password (its stderr reaches the terminal)."""
    try:
        done = subprocess.run([str(path.resolve())], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              timeout=timeout, check=False, env=child_environment())
    except subprocess.TimeoutExpired:
        raise SecretError(f"vault password script {path} did not finish within {timeout:.0f} s") from None
    except OSError as exc:
        raise SecretError(f"vault password script {path} cannot run: {exc.strerror}") from None
    if done.returncode != 0:
        raise SecretError(f"vault password script {path} exited with code {done.returncode}")
    return done.stdout


def _yaml_pairs(text: str, where: str) -> dict:
    import yaml

    try:
        pairs = yaml.safe_load(text)
    except RecursionError:
        raise SecretError(f"{where}: decrypted content is nested too deeply") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" (YAML error at line {mark.line + 1})" if mark is not None else ""
        raise SecretError(f"{where}: decrypted content is neither TOML nor YAML name: value pairs{line}") from None
    if pairs is None:
        return {}
    if not isinstance(pairs, dict):
        raise SecretError(f"{where}: decrypted content is not name: value pairs")
    return pairs


def _editor_command(text: str) -> list[str]:
    try:
        command = shlex.split(text)
    except ValueError:
        command = []
    if not command:
        raise SecretError(f"editor {text!r} (VISUAL or EDITOR) is not a command line")
    return command


def _run_editor(command: list[str], plain: Path, path: Path) -> None:
    try:
        result = subprocess.run([*command, str(plain)], check=False, env=child_environment())
    except FileNotFoundError:
        raise SecretError(f"editor {command[0]!r} not found (set VISUAL or EDITOR)") from None
    if result.returncode != 0:
        raise SecretError(f"editor exited with status {result.returncode}; {path} is unchanged")


def _write_atomically(path: Path, text: str) -> None:
    """Write a temporary file beside ``path`` and rename it over: readers see old or new, never half."""
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o600
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(descriptor, "w", encoding="ascii") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _memory_dir() -> str | None:
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK | os.X_OK) else None
