"""Wire tests: real idnode processes on 127.0.0.1, real HTTP clients (pyhandle included)."""
