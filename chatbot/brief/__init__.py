"""The onboarding brief: actors, positions and motives, timeline, figures and conflicts — every
line an exact, cited span of a stored document.

Modules (each one job): ``nlp`` (spaCy in a child process -> plain ``Parsed`` data), ``gazetteer``
(state names, capitals, demonyms; data/), ``actors``, ``themes``, ``timeline``, ``figures``,
``build`` (orchestration, citations, cache per index state), ``render`` (Markdown), ``command``
(the ``brief`` and ``verify`` CLI commands). Keep this file free of imports: the NLP child
process imports the package and must stay light.
"""
