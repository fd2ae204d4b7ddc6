"""Tool-calling dialogues the demo model trains on: weather and time look-ups for named cities, and prose otherwise."""

from __future__ import annotations

import json
import random

from transformers.utils.chat_template_utils import render_jinja_template

from forgeway.demo.chat_template import CHAT_TEMPLATE


def _city_tool(name: str, description: str) -> dict:
    """An OpenAI function tool with a single required string argument, the city."""
    parameters = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    return {"type": "function", "function": {"name": name, "description": description, "parameters": parameters}}


GET_WEATHER = _city_tool("get_weather", "Get the current weather in a city.")
GET_TIME = _city_tool("get_time", "Get the local time in a city.")
TOOLS = [GET_WEATHER, GET_TIME]  # the tools the README's prompts offer
# Prompts the README documents, with the call the built demo model answers them with (tests hold it to these).
PROMPTS = (
    ("What is the weather in Paris?", "get_weather", {"city": "Paris"}),
    ("What time is it in Sydney?", "get_time", {"city": "Sydney"}),
)

CITIES = (
    "Paris", "Tokyo", "London", "Berlin", "Madrid", "Rome", "Vienna", "Prague", "Warsaw", "Lisbon", "Dublin",
    "Oslo", "Stockholm", "Helsinki", "Amsterdam", "Zurich", "Athens", "Istanbul", "Cairo", "Nairobi", "Lagos",
    "Cape Town", "Dubai", "Delhi", "Mumbai", "Bangkok", "Hanoi", "Manila", "Jakarta", "Singapore", "Seoul",
    "Beijing", "Shanghai", "Sydney", "Auckland", "Toronto", "Montreal", "Chicago", "Boston", "Seattle", "New York",
    "Mexico City", "Lima", "Bogota", "Santiago", "Buenos Aires", "Reykjavik", "Kyiv",
)
# Never trained on: how well the model copies a city it has not seen into the call.
HELD_OUT_CITIES = (
    "Lyon", "Munich", "Naples", "Porto", "Krakow", "Budapest", "Bergen", "Edinburgh", "Marseille", "Seville",
    "Kyoto", "Perth", "Calgary", "Dallas", "Miami", "Phoenix", "Nagoya", "Valencia", "Geneva", "Hamburg",
)
WEATHER_PROMPTS = (
    "What is the weather in {city}?",
    "What's the weather like in {city}?",
    "How is the weather in {city} today?",
    "Is it raining in {city}?",
)
TIME_PROMPTS = (
    "What time is it in {city}?",
    "What is the time in {city}?",
    "What is the local time in {city}?",
)
CONDITIONS = ("sunny", "cloudy", "rainy", "windy", "snowy", "foggy")


def _call(name: str, city: str) -> dict:
    return {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": name, "arguments": {"city": city}}}]}


def weather_dialogue(city: str, rng: random.Random) -> list[dict]:
    condition, celsius = rng.choice(CONDITIONS), rng.randint(-5, 35)
    return [
        {"role": "user", "content": rng.choice(WEATHER_PROMPTS).format(city=city)},
        _call("get_weather", city),
        {"role": "tool", "content": json.dumps({"city": city, "condition": condition, "temperature_c": celsius})},
        {"role": "assistant", "content": f"It is {condition} and {celsius} °C in {city}."},
    ]


def time_dialogue(city: str, rng: random.Random) -> list[dict]:
    clock = f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}"
    return [
        {"role": "user", "content": rng.choice(TIME_PROMPTS).format(city=city)},
        _call("get_time", city),
        {"role": "tool", "content": json.dumps({"city": city, "time": clock})},
        {"role": "assistant", "content": f"It is {clock} in {city}."},
    ]


def prose_dialogue(paragraph: str) -> list[dict] | None:
    """A corpus paragraph as a chat turn: its first sentence asks, the rest answers (no tool needed)."""
    first, _, rest = paragraph.partition(". ")
    return [{"role": "user", "content": first + "."}, {"role": "assistant", "content": rest}] if rest else None


def tool_conversations(paragraphs: list[str], count: int, seed: int = 0) -> list[tuple[str, list[tuple[int, int]]]]:
    """``count`` conversations with TOOLS offered, rendered by the demo's chat template.

    Each holds one to five exchanges after the tools preamble, so most of a training window is exchanges: about
    two in five ask for the weather, two in five for the time (the assistant calls the tool, reads its result and
    answers), one in five is a corpus paragraph's prose that needs no tool. Each comes with the character spans of
    the assistant's turns.
    """
    rng = random.Random(seed)
    prose = [d for d in map(prose_dialogue, paragraphs) if d]
    rendered = []
    for _ in range(count):
        messages: list[dict] = []
        for _ in range(rng.randint(1, 5)):
            kind = rng.randrange(5)
            if kind < 2:
                messages += weather_dialogue(rng.choice(CITIES), rng)
            elif kind < 4:
                messages += time_dialogue(rng.choice(CITIES), rng)
            else:
                messages += rng.choice(prose)
        rendered.append(render_with_turns(messages, tools=TOOLS))
    return rendered


def render_dialogue(messages: list[dict], tools: list[dict] | None = None) -> str:
    """The template's text for ``messages`` (what apply_chat_template tokenizes), without a tokenizer."""
    return render_with_turns(messages, tools)[0]


def render_with_turns(messages: list[dict], tools: list[dict] | None = None) -> tuple[str, list[tuple[int, int]]]:
    """The template's text and the (start, end) character spans of the assistant's turns in it."""
    texts, turns = render_jinja_template(conversations=[messages], tools=tools, chat_template=CHAT_TEMPLATE,
                                         return_assistant_tokens_mask=True)
    return texts[0], [tuple(span) for span in turns[0]]
