"""`pulse report`: the adoption report for people who read rather than watch.

A period (local days, Asia/Ho_Chi_Minh) and optionally one province are read from ClickHouse
(`queries`), drawn as static SVG charts (`charts`, matplotlib, no JavaScript), put into one
self-contained HTML page (`render`, jinja2) and, on request, printed to PDF by headless Chromium
(`chromium`). Nothing in the page loads anything from elsewhere.
"""
