"""Typer CLI. Heavy imports (torch, onnx) happen inside command bodies."""
