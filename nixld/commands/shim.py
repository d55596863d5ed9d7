"""`nixld shim --path [--system SYSTEM]`: where nixld's shim is."""

from __future__ import annotations

from nixld.console import argument_parser, write_output


def main(args: list[str]) -> int:
    from nixld import shims

    parser = argument_parser(
        "shim",
        description="nixld's shim is a program interpreter, built at install time: put it where a "
                    "foreign program's interpreter is expected (/lib64/ld-linux-x86-64.so.2, as "
                    "nix-ld's is) or link a program with -Wl,--dynamic-linker=PATH, and the program "
                    "starts directly through the loader NIX_LD names, with its environment untouched.",
        epilog="exit status: 0, 1 when this installation has no shim for SYSTEM, 2 for a usage error.",
    )
    parser.add_argument("--path", action="store_true", required=True, help="print the shim's path")
    parser.add_argument("--system", metavar="SYSTEM", choices=shims.SHIM_SYSTEMS,
                        help=f"for programs of SYSTEM ({', '.join(shims.SHIM_SYSTEMS)}; default: this machine's)")
    options = parser.parse_args(args)
    if options is None:  # the help was asked for, and shown
        return 0
    write_output(shims.shim_path(options.system) + "\n")
    return 0
