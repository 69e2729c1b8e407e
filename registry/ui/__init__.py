"""The dashboard's static files (HTML, CSS, JS modules), served by `weft server` at `/ui`."""
