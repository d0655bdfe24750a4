"""`pulse report`: the adoption report for people who read rather than watch.

A period of local days (Asia/Ho_Chi_Minh) and optionally one province are read from ClickHouse
(`queries`: SQL only, no DDL), turned into figures, ranks and sentences (`content`, pure), drawn as
static SVG charts (`charts`, matplotlib, no JavaScript) and put into one self-contained HTML page
(`build` gathers it all, `render` fills the jinja2 template in `templates/`); `chromium` prints the PDF.
`command` is the click command, `pictures` makes the README's pictures (`make pictures`).
Nothing in the page loads anything from elsewhere.
"""
