"""The `fab` tasks, made from the `vmstation` click commands so that both front ends cannot drift.

Every command becomes a task of the same name (a group's commands: ``fab inventory.check``), every option a
flag with the same long name, short flag, meaning and environment variable (click still parses it: the task
hands its flags back to the vmstation CLI). A required argument stays positional (``fab plan deploy-debian``);
an optional one is a flag of its name (``fab phases --target deploy-rke2``), and one that takes several values
a repeatable flag (``fab wake --hosts a --hosts b``). ``fabfile.py`` in this repository and the one
``vmstation init`` writes are the same line: ``from vmstation.fab_tasks import ns``.
"""

from __future__ import annotations

import click
from invoke import Collection, Task
from invoke.parser import Argument

from vmstation.cli import main


def build_namespace(group: click.Group = main) -> Collection:
    """A Collection with one task per command of ``group`` and one sub-collection per sub-group."""
    namespace = Collection()
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            namespace.add_collection(build_namespace(command), name=name)
        else:
            namespace.add_task(CommandTask(command, _path(group) + [name]), name=name)
    return namespace


class CommandTask(Task):
    """An Invoke task whose arguments are a click command's parameters."""

    def __init__(self, command: click.Command, path: list[str]):
        self.command, self.path = command, path

        def body(c, **values):
            self.call(values)
        body.__name__ = path[-1].replace("-", "_")
        super().__init__(body, name=path[-1], positional=[p.name for p in self._positionals()],
                         help={}, auto_shortflags=False)
        self.__doc__ = command.help

    def get_arguments(self, ignore_unknown_help=None) -> list[Argument]:
        return [fab_argument(param) for param in self.command.params]

    def call(self, values: dict) -> None:
        """Run the vmstation command with the flags given to fab (the same exit code and output)."""
        main.main(args=self.path + to_cli_args(self.command, values), prog_name="fab", standalone_mode=True)

    def _positionals(self):
        return [p for p in self.command.params if _is_positional(p)]


def fab_argument(param: click.Parameter) -> Argument:
    """The Invoke flag for one click parameter: same long name and short flag; click keeps the defaults."""
    names = _flag_names(param)
    attr_name = _key(param) if _key(param) != names[0] else None   # Invoke's rule: the dashes made underscores
    kind, default = str, None
    if isinstance(param, click.Option) and param.is_flag:
        kind, default = bool, False
    elif isinstance(param, click.Option) and param.count:
        return Argument(names=names, kind=int, default=0, incrementable=True, attr_name=attr_name,
                        help=param.help)
    elif param.multiple or param.nargs == -1:
        kind, default = list, []
    elif isinstance(param.type, click.types.IntParamType):
        kind = int
    help_text = param.help if isinstance(param, click.Option) else f"{param.name.upper()} (vmstation's argument)"
    positional = _is_positional(param)
    return Argument(names=names, kind=kind, default=default, attr_name=attr_name, help=help_text,
                    positional=positional)


def to_cli_args(command: click.Command, values: dict) -> list[str]:
    """Flags given to fab back into vmstation's argv (unset ones left out, so click's defaults apply)."""
    args: list[str] = []
    positionals: list[str] = []
    for param in command.params:
        value = values.get(_key(param))
        if value in (None, False, [], 0) and not (isinstance(param, click.Option) and param.count and value):
            continue
        if isinstance(param, click.Argument):
            positionals += list(value) if isinstance(value, list) else [str(value)]
            continue
        flag = param.opts[0]
        if param.is_flag:
            args.append(flag)
        elif param.count:
            args += [flag] * int(value)
        elif isinstance(value, list):
            for item in value:
                args += [flag, str(item)]
        else:
            args += [flag, str(value)]
    return args + (["--"] + positionals if positionals else [])


def _is_positional(param: click.Parameter) -> bool:
    """A required one-value argument stays positional (``fab plan deploy-debian``); an optional one
    (``vmstation phases [TARGET]``) or one taking several values is a flag, since Invoke's positionals are
    required and single."""
    return isinstance(param, click.Argument) and param.nargs == 1 and param.required


def _flag_names(param: click.Parameter) -> list[str]:
    """``--inventory``/``-i`` -> ["inventory", "i"]; an argument ``hosts`` -> ["hosts"]."""
    if isinstance(param, click.Argument):
        return [param.name.replace("_", "-")]
    longs = [o[2:] for o in param.opts if o.startswith("--")]
    shorts = [o[1:] for o in param.opts if not o.startswith("--")]
    return longs + shorts          # every alias too: --plan and --check


def _key(param: click.Parameter) -> str:
    """The keyword Invoke hands the task body for this flag (``--trust-new-host-keys`` -> trust_new_host_keys)."""
    return _flag_names(param)[0].replace("-", "_")


def _path(group: click.Group) -> list[str]:
    return [] if group is main else [group.name]


ns = build_namespace()
