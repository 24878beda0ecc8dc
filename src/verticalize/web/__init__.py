"""The web console (`verticalize console DIR`, U3): the projects under DIR, their runs, data,
evaluation, review queue, tracked runs, registry and a playground, in the browser.

One FastAPI process; pages are rendered on the server (Jinja2) and updated with htmx; every
asset is served from web/static, so it works offline. Jobs are `verticalize` subprocesses
whose state lives in files (DIR/.verticalize-console/jobs), so the console can restart."""
