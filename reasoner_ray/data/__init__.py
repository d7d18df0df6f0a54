"""Data: readers for every supported format into the project's VQARow schema, and image helpers."""
