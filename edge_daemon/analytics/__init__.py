"""Per-car analytics: observations in, trips, ride quality, doors, leveling, faults, visits, daily records out."""
