"""Operations: small declarative units that look at a fact and decide what to do.

Each operation knows (a) the shell snippet that asks the host for its fact
(``probe``), (b) how to tell from that fact whether the host already matches, and
(c) what to upload and run when it does not (``decide``, a pure function). The
runner asks the probes of a whole phase in ONE remote command, decides locally,
uploads what differs through one SFTP session and places it with ONE command.

A decision is a ``Step``: "change" (something will be done), "ok" (already so,
with the reason), "skip" (cannot be done here, with the reason: never reported as
done), "check" (runs every time but changes nothing: waits, captures) or "warn"
(a preflight warning the operator must see; nothing runs).
"""

from vmstation.operations.base import (CHANGE, CHECK, OK, SKIP, WARN, LocalFile, LocalWrite, On, Operation, Step,
                                       Upload, label_of, labels_of, local_file, sh)
from vmstation.operations.commands import Check, Command, Notice, wait_until
from vmstation.operations.files import Directory, Edit, Fetch, File, FileState, line, parse_stat
from vmstation.operations.system import FEATURE_PROBES, KernelModule, Package, Service, Sysctl

__all__ = ["CHANGE", "CHECK", "OK", "SKIP", "WARN", "LocalFile", "LocalWrite", "On", "local_file", "Operation",
           "Step", "Upload", "sh", "label_of", "labels_of",
           "Check", "Command", "Notice", "wait_until", "Directory", "Edit", "Fetch", "File", "FileState", "line",
           "parse_stat", "FEATURE_PROBES", "KernelModule", "Package", "Service", "Sysctl"]
