"""Caffe's command-line conventions for click: gflags' single-dash long options
(``-gpu 0``, ``-solver=s.prototxt``) and the ``-gpu`` id.

Only click is imported here, so ``caffepy --help`` stays instant.
"""

import click


class CaffeCommand(click.Command):
    """A command that also takes Caffe's gflags spellings of its long options:
    ``-gpu 0`` and ``-gpu=0`` as ``--gpu 0``."""

    def parse_args(self, ctx, args):
        names = {
            opt[2:]
            for param in self.get_params(ctx)
            for opt in (*param.opts, *param.secondary_opts)
            if opt.startswith("--")
        }
        out = []
        for i, arg in enumerate(args):
            if arg == "--":
                out.extend(args[i:])
                break
            if arg[:1] == "-" and arg[1:2] != "-" and arg[1:].split("=")[0] in names:
                arg = "-" + arg
            out.append(arg)
        return super().parse_args(ctx, out)


class CaffeGroup(click.Group):
    """A group whose commands (and sub-groups) are :class:`CaffeCommand`."""

    command_class = CaffeCommand
    group_class = type


class GpuId(click.ParamType):
    """One GPU id, as Caffe's ``-gpu`` for commands that use one GPU."""

    name = "ID"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        text = str(value).strip()
        if text == "all" or "," in text:
            # Caffe's test and time also run on the first GPU only.
            command = ctx.info_name if ctx is not None else "this command"
            self.fail(
                f"{command!r} runs on one GPU (only 'train' takes several): "
                f"use one id (got {text!r})",
                param,
                ctx,
            )
        try:
            device = int(text)
        except ValueError:
            self.fail(f"expected a GPU id such as 0, got {text!r}", param, ctx)
        if device < 0:
            self.fail(f"a GPU id is 0 or more, got {device}", param, ctx)
        return device
