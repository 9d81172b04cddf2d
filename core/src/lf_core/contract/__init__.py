"""The contract every process agrees on: names, subjects, protocol constants, specs, route entries."""
