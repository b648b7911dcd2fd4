"""The command line imports only the module of the command it runs; the table that says which
module registers which command must list every command."""

import importlib

import cli


def test_every_command_maps_to_the_module_that_registers_it():
    for name in cli.COMMAND_MODULES:
        importlib.import_module(name)
    registered = cli.build_parser()._subparsers._group_actions[0].choices
    assert sorted(registered) == sorted(cli.COMMANDS)
    for command, module in cli.COMMANDS.items():
        assert command in cli.build_parser(command)._subparsers._group_actions[0].choices, module
