"""`cmd/selftest`: a health check that needs no camera and no dataset on the Pi, as a list of checks.

`command` (the request, the result and the handler), `camera` (generated frames of known classes
through each live camera's classifier), `golden` (every live model answers its golden vectors).
"""
