"""Deployment helpers: TLS material and local Deployment Engine processes."""
