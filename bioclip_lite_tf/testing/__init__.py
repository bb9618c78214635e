"""Fixtures for tests and benches: tiny trained workspaces and exports (export_fixtures) and a
small learnable dataset (synthetic). Production code never imports this package."""
