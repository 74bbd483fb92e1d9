"""Documented fakes at vendor boundaries (hardware, network APIs); never mocks of our own code."""
