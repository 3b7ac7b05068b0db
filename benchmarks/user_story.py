"""Inputs for the selection-spec user story (CHANGELOG, issue notes): a FineWeb-like pool in
nested folders outside any root (`text, id, url, dump, token_count`, read-only) and a JSONL
target of 32 hand-written science Q+A texts. Then, with specs naming them:

    .venv/bin/python benchmarks/user_story.py /tmp/story
    .venv/bin/python -m nag_assets.cli materialize --spec science.yaml
"""

import json
import stat
import sys
from pathlib import Path

import polars as pl

from nag_assets.sources.wiki import load_wiki_leads, spread

base = Path(sys.argv[1])
leads = spread(load_wiki_leads(), 1200)
pool = base / "downloads" / "fineweb"
for i, dump in enumerate(["CC-MAIN-2024-10", "CC-MAIN-2024-18"]):
    (pool / dump).mkdir(parents=True, exist_ok=True)
    for j in range(2):
        part = leads.slice(600 * i + 300 * j, 300)
        pl.DataFrame(
            {
                "text": part["text"],
                "id": [f"<urn:uuid:{dump}-{j}-{k}>" for k in range(part.height)],
                "url": [
                    f"https://en.wikipedia.org/wiki/{t.replace(' ', '_')}" for t in part["title"]
                ],
                "dump": dump,
                "token_count": [len(t.split()) for t in part["text"]],
                "topic": part["topic"],
            }
        ).write_parquet(pool / dump / f"00{j}_00000.parquet")
qa = [
    (
        "Why does ice float on water?",
        "Ice is less dense than liquid water because its molecules form an open crystal lattice.",
    ),
    (
        "What gas do plants take in for photosynthesis?",
        "Plants take in carbon dioxide and release oxygen.",
    ),
    (
        "What causes the seasons on Earth?",
        "The tilt of Earth's axis changes how directly sunlight strikes each hemisphere.",
    ),
    (
        "Why is the sky blue?",
        "Air molecules scatter short blue wavelengths of sunlight more than red ones.",
    ),
    ("What is the powerhouse of the cell?", "The mitochondrion makes most of the cell's ATP."),
    (
        "How do magnets attract iron?",
        "The magnetic field aligns the iron's domains so it is pulled toward the magnet.",
    ),
    (
        "What happens to water at 100 degrees Celsius at sea level?",
        "It boils and turns into water vapour.",
    ),
    (
        "What is an atom's nucleus made of?",
        "Protons and neutrons held together by the strong force.",
    ),
    ("Why do objects fall to the ground?", "Gravity pulls masses toward the centre of the Earth."),
    ("What is the chemical formula of table salt?", "Sodium chloride, NaCl."),
    ("How does sound travel?", "As pressure waves through a medium such as air or water."),
    ("What is the speed of light in a vacuum?", "About 300,000 kilometres per second."),
    ("Which planet is closest to the Sun?", "Mercury."),
    ("What do red blood cells carry?", "Oxygen, bound to haemoglobin."),
    (
        "Why does water boil at a lower temperature on a high mountain?",
        "Because the air pressure is lower.",
    ),
    ("What is DNA?", "The molecule that carries genetic instructions in living things."),
    ("How do vaccines protect us?", "They train the immune system to recognise a pathogen."),
    ("What is friction?", "A force that resists the sliding of one surface over another."),
    (
        "Why does the Moon have phases?",
        "We see different parts of its sunlit half as it orbits Earth.",
    ),
    ("What is an acid?", "A substance that donates hydrogen ions and has a pH below 7."),
    ("What is erosion?", "The wearing away of rock and soil by wind, water or ice."),
    ("How do volcanoes form?", "Magma rises through the crust where plates diverge or subduct."),
    ("What is the function of the heart?", "It pumps blood around the body."),
    (
        "What is a food chain?",
        "The sequence of who eats whom in an ecosystem, starting with producers.",
    ),
    ("What is kinetic energy?", "The energy an object has because of its motion."),
    ("What is the largest planet in the solar system?", "Jupiter."),
    (
        "Why do metals conduct electricity?",
        "Their outer electrons move freely through the lattice.",
    ),
    ("What is condensation?", "Water vapour cooling into liquid droplets."),
    ("What does a thermometer measure?", "Temperature."),
    ("What are fossils?", "Preserved remains or traces of ancient organisms in rock."),
    (
        "How does a lever make work easier?",
        "It trades a longer distance for a smaller force around a fulcrum.",
    ),
    (
        "What is photosynthesis?",
        "Plants using sunlight to turn carbon dioxide and water into sugar and oxygen.",
    ),
]
targets = base / "targets"
targets.mkdir(parents=True, exist_ok=True)
(targets / "science_qa.jsonl").write_text(
    "".join(json.dumps({"text": f"Question: {q} Answer: {a}"}) + "\n" for q, a in qa)
)
(base / "reading_targets").mkdir(exist_ok=True)
for p in sorted(pool.rglob("*"), reverse=True):
    p.chmod(stat.S_IREAD | (stat.S_IEXEC if p.is_dir() else 0))
print(len(qa), "target texts;", sum(1 for _ in pool.rglob("*.parquet")), "pool files")
