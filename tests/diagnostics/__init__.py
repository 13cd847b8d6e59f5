"""Tests of errprop.diagnostics (a package, so that test module names may repeat elsewhere)."""
