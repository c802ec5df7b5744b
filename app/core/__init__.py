"""The sans-I/O core: decisions as data.

Nothing in this package performs I/O, reads the clock or draws random numbers; it must not
import httpx, githubkit's client, pygit2, starlette, sqlalchemy or dbos (a test enforces it).
"""
