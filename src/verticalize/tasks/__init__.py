"""The built-in task plugins, one package each (classification, ner, generation, multilabel,
regression). Nothing in verticalize imports them directly: `verticalize.plugins.get_task`
finds each by its name, as it finds a third party's through the `verticalize.tasks` entry
points."""
