"""The bundled sample author (original writing made for this project) and the tools that serve
it locally: a static site on 127.0.0.1, a LinkedIn export zip and a git repository built from
the files here."""
