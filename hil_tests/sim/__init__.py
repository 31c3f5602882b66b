"""Simulated traction elevator: car model, scenarios, trace and feed formats."""
