"""Placeholder until the generative path lands."""


class LLMUnavailable(Exception):
    pass


def llm_from_settings(settings):
    return None
