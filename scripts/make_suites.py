#!/usr/bin/env python3
"""Generates evotune's built-in prior suites (data/*.jsonl) from fact tables written for this project.

Deterministic: the same script writes the same files (random.Random with fixed seeds). Run from the
repository root:  python3 scripts/make_suites.py
Every table below was written by hand for evotune; no benchmark text is copied.
"""

import json
import random
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data"

# === capitals: (country, capital, region, tempting wrong city or None) ===
CAPITALS = [
    ("France", "Paris", "eu", "Lyon"), ("Germany", "Berlin", "eu", "Munich"), ("Italy", "Rome", "eu", "Milan"),
    ("Spain", "Madrid", "eu", "Barcelona"), ("Portugal", "Lisbon", "eu", "Porto"), ("Netherlands", "Amsterdam", "eu", "Rotterdam"),
    ("Belgium", "Brussels", "eu", "Antwerp"), ("Austria", "Vienna", "eu", "Salzburg"), ("Switzerland", "Bern", "eu", "Zurich"),
    ("Poland", "Warsaw", "eu", "Krakow"), ("Czech Republic", "Prague", "eu", "Brno"), ("Hungary", "Budapest", "eu", None),
    ("Greece", "Athens", "eu", "Thessaloniki"), ("Sweden", "Stockholm", "eu", "Gothenburg"), ("Norway", "Oslo", "eu", "Bergen"),
    ("Denmark", "Copenhagen", "eu", "Aarhus"), ("Finland", "Helsinki", "eu", None), ("Ireland", "Dublin", "eu", "Cork"),
    ("United Kingdom", "London", "eu", "Manchester"), ("Iceland", "Reykjavik", "eu", None), ("Romania", "Bucharest", "eu", None),
    ("Bulgaria", "Sofia", "eu", None), ("Serbia", "Belgrade", "eu", None), ("Croatia", "Zagreb", "eu", "Split"),
    ("Ukraine", "Kyiv", "eu", "Odesa"), ("Russia", "Moscow", "eu", "Saint Petersburg"), ("Estonia", "Tallinn", "eu", None),
    ("Latvia", "Riga", "eu", None), ("Lithuania", "Vilnius", "eu", None), ("Slovakia", "Bratislava", "eu", None),
    ("Slovenia", "Ljubljana", "eu", None), ("Albania", "Tirana", "eu", None), ("Malta", "Valletta", "eu", None),
    ("Luxembourg", "Luxembourg", "eu", None), ("Belarus", "Minsk", "eu", None), ("Moldova", "Chisinau", "eu", None),
    ("Japan", "Tokyo", "as", "Osaka"), ("China", "Beijing", "as", "Shanghai"), ("India", "New Delhi", "as", "Mumbai"),
    ("South Korea", "Seoul", "as", "Busan"), ("Thailand", "Bangkok", "as", None), ("Vietnam", "Hanoi", "as", "Ho Chi Minh City"),
    ("Indonesia", "Jakarta", "as", None), ("Philippines", "Manila", "as", None), ("Malaysia", "Kuala Lumpur", "as", None),
    ("Pakistan", "Islamabad", "as", "Karachi"), ("Bangladesh", "Dhaka", "as", None), ("Nepal", "Kathmandu", "as", None),
    ("Afghanistan", "Kabul", "as", None), ("Iran", "Tehran", "as", None), ("Iraq", "Baghdad", "as", None),
    ("Saudi Arabia", "Riyadh", "as", "Jeddah"), ("Turkey", "Ankara", "as", "Istanbul"), ("Syria", "Damascus", "as", None),
    ("Jordan", "Amman", "as", None), ("Lebanon", "Beirut", "as", None), ("Qatar", "Doha", "as", None),
    ("United Arab Emirates", "Abu Dhabi", "as", "Dubai"), ("Kazakhstan", "Astana", "as", "Almaty"), ("Mongolia", "Ulaanbaatar", "as", None),
    ("Myanmar", "Naypyidaw", "as", "Yangon"), ("Cambodia", "Phnom Penh", "as", None), ("Laos", "Vientiane", "as", None),
    ("North Korea", "Pyongyang", "as", None), ("Uzbekistan", "Tashkent", "as", None), ("Singapore", "Singapore", "as", None),
    ("Egypt", "Cairo", "af", "Alexandria"), ("Nigeria", "Abuja", "af", "Lagos"), ("Kenya", "Nairobi", "af", "Mombasa"),
    ("Ethiopia", "Addis Ababa", "af", None), ("Ghana", "Accra", "af", None), ("Morocco", "Rabat", "af", "Casablanca"),
    ("Algeria", "Algiers", "af", None), ("Tunisia", "Tunis", "af", None), ("Libya", "Tripoli", "af", None),
    ("Sudan", "Khartoum", "af", None), ("Uganda", "Kampala", "af", None), ("Tanzania", "Dodoma", "af", "Dar es Salaam"),
    ("Senegal", "Dakar", "af", None), ("Zimbabwe", "Harare", "af", None), ("Zambia", "Lusaka", "af", None),
    ("Angola", "Luanda", "af", None), ("Somalia", "Mogadishu", "af", None), ("Rwanda", "Kigali", "af", None),
    ("Mali", "Bamako", "af", None), ("Cameroon", "Yaounde", "af", "Douala"), ("Madagascar", "Antananarivo", "af", None),
    ("Mozambique", "Maputo", "af", None), ("Botswana", "Gaborone", "af", None), ("Namibia", "Windhoek", "af", None),
    ("United States", "Washington, D.C.", "am", "New York"), ("Canada", "Ottawa", "am", "Toronto"), ("Mexico", "Mexico City", "am", "Guadalajara"),
    ("Brazil", "Brasilia", "am", "Rio de Janeiro"), ("Argentina", "Buenos Aires", "am", "Cordoba"), ("Chile", "Santiago", "am", "Valparaiso"),
    ("Peru", "Lima", "am", "Cusco"), ("Colombia", "Bogota", "am", "Medellin"), ("Venezuela", "Caracas", "am", None),
    ("Ecuador", "Quito", "am", "Guayaquil"), ("Uruguay", "Montevideo", "am", None), ("Paraguay", "Asuncion", "am", None),
    ("Cuba", "Havana", "am", None), ("Jamaica", "Kingston", "am", None), ("Guatemala", "Guatemala City", "am", None),
    ("Honduras", "Tegucigalpa", "am", None), ("Nicaragua", "Managua", "am", None), ("Costa Rica", "San Jose", "am", None),
    ("Panama", "Panama City", "am", None), ("Dominican Republic", "Santo Domingo", "am", None), ("Haiti", "Port-au-Prince", "am", None),
    ("Australia", "Canberra", "oc", "Sydney"), ("New Zealand", "Wellington", "oc", "Auckland"), ("Fiji", "Suva", "oc", None),
    ("Papua New Guinea", "Port Moresby", "oc", None), ("Samoa", "Apia", "oc", None),
]


def capitals(rng):
    by_region = {}
    for _, cap, reg, _ in CAPITALS:
        by_region.setdefault(reg, []).append(cap)
    out = []
    for country, cap, reg, tempting in CAPITALS:
        pool = [c for c in by_region[reg] if c != cap]
        wrong = [tempting] if tempting else []
        while len(wrong) < 3:
            c = rng.choice(pool)
            if c not in wrong and c != cap:
                wrong.append(c)
        out.append(mc(rng, f"What is the capital of {country}?", cap, wrong))
    return out


# === opposites: (word, opposite, a related word that is NOT its opposite or None) ===
OPPOSITES = [
    ("hot", "cold", "warm"), ("big", "small", "large"), ("tall", "short", "high"), ("fast", "slow", "quick"),
    ("happy", "sad", "glad"), ("light", "dark", "bright"), ("up", "down", "above"), ("open", "closed", "wide"),
    ("full", "empty", "filled"), ("old", "young", "aged"), ("rich", "poor", "wealthy"), ("hard", "soft", "firm"),
    ("wet", "dry", "damp"), ("early", "late", "soon"), ("strong", "weak", "powerful"), ("loud", "quiet", "noisy"),
    ("clean", "dirty", "tidy"), ("thick", "thin", "dense"), ("heavy", "light", "massive"), ("long", "short", "lengthy"),
    ("win", "lose", "succeed"), ("buy", "sell", "purchase"), ("give", "take", "offer"), ("push", "pull", "press"),
    ("arrive", "leave", "reach"), ("begin", "end", "start"), ("remember", "forget", "recall"), ("love", "hate", "adore"),
    ("accept", "refuse", "agree"), ("increase", "decrease", "grow"), ("inside", "outside", "within"), ("before", "after", "earlier"),
    ("day", "night", "morning"), ("north", "south", "east"), ("left", "right", "side"), ("top", "bottom", "peak"),
    ("front", "back", "face"), ("friend", "enemy", "companion"), ("question", "answer", "query"), ("war", "peace", "battle"),
    ("true", "false", "real"), ("alive", "dead", "living"), ("brave", "cowardly", "bold"), ("cheap", "expensive", "inexpensive"),
    ("deep", "shallow", "low"), ("easy", "difficult", "simple"), ("first", "last", "initial"), ("good", "bad", "fine"),
    ("high", "low", "tall"), ("kind", "cruel", "gentle"), ("near", "far", "close"), ("new", "old", "fresh"),
    ("safe", "dangerous", "secure"), ("smooth", "rough", "flat"), ("sweet", "sour", "sugary"), ("wide", "narrow", "broad"),
    ("wise", "foolish", "clever"), ("asleep", "awake", "tired"), ("arrival", "departure", "entry"), ("borrow", "lend", "take"),
    ("laugh", "cry", "smile"), ("ancient", "modern", "antique"), ("major", "minor", "main"), ("maximum", "minimum", "most"),
    ("positive", "negative", "certain"), ("visible", "invisible", "clear"), ("possible", "impossible", "likely"),
    ("polite", "rude", "courteous"), ("guilty", "innocent", "blamed"), ("generous", "selfish", "kind"), ("import", "export", "bring"),
    ("sunrise", "sunset", "dawn"), ("summer", "winter", "spring"), ("sharp", "blunt", "pointed"), ("tight", "loose", "firm"),
    ("noisy", "silent", "loud"), ("fat", "thin", "large"), ("beautiful", "ugly", "pretty"), ("calm", "angry", "relaxed"),
    ("common", "rare", "usual"), ("correct", "wrong", "right"), ("dangerous", "safe", "risky"), ("dull", "interesting", "boring"),
    ("fail", "succeed", "lose"), ("float", "sink", "swim"), ("freeze", "melt", "chill"), ("gain", "lose", "earn"),
    ("lazy", "hardworking", "idle"), ("lend", "borrow", "give"), ("mad", "sane", "angry"), ("male", "female", "man"),
    ("never", "always", "rarely"), ("often", "seldom", "frequently"), ("plus", "minus", "add"), ("raise", "lower", "lift"),
    ("rise", "fall", "climb"), ("start", "finish", "begin"), ("stand", "sit", "rise"), ("teacher", "student", "tutor"),
    ("together", "apart", "joined"), ("victory", "defeat", "triumph"), ("whisper", "shout", "murmur"), ("yes", "no", "okay"),
]


def opposites(rng):
    answers = [o for _, o, _ in OPPOSITES]
    out = []
    for word, opp, related in OPPOSITES:
        wrong = [related] if related else []
        while len(wrong) < 3:
            c = rng.choice(answers)
            if c not in wrong and c != opp and c != word:
                wrong.append(c)
        out.append(mc(rng, f'What is the opposite of "{word}"?', opp, wrong))
    return out


# === plurals: (singular, plural) — regular, -es, -ies, -ves and irregular ===
PLURALS = [
    ("cat", "cats"), ("dog", "dogs"), ("book", "books"), ("car", "cars"), ("tree", "trees"), ("house", "houses"),
    ("apple", "apples"), ("chair", "chairs"), ("river", "rivers"), ("window", "windows"), ("bird", "birds"), ("flower", "flowers"),
    ("box", "boxes"), ("bus", "buses"), ("church", "churches"), ("dish", "dishes"), ("fox", "foxes"), ("glass", "glasses"),
    ("watch", "watches"), ("brush", "brushes"), ("kiss", "kisses"), ("beach", "beaches"), ("match", "matches"), ("tax", "taxes"),
    ("city", "cities"), ("baby", "babies"), ("lady", "ladies"), ("story", "stories"), ("party", "parties"), ("family", "families"),
    ("cherry", "cherries"), ("country", "countries"), ("fly", "flies"), ("puppy", "puppies"), ("day", "days"), ("boy", "boys"),
    ("key", "keys"), ("toy", "toys"), ("monkey", "monkeys"), ("valley", "valleys"),
    ("knife", "knives"), ("leaf", "leaves"), ("wolf", "wolves"), ("life", "lives"), ("wife", "wives"), ("half", "halves"),
    ("shelf", "shelves"), ("loaf", "loaves"), ("thief", "thieves"), ("calf", "calves"), ("roof", "roofs"), ("chief", "chiefs"),
    ("cliff", "cliffs"), ("belief", "beliefs"),
    ("potato", "potatoes"), ("tomato", "tomatoes"), ("hero", "heroes"), ("echo", "echoes"), ("piano", "pianos"), ("photo", "photos"),
    ("radio", "radios"), ("zoo", "zoos"),
    ("man", "men"), ("woman", "women"), ("child", "children"), ("person", "people"), ("mouse", "mice"), ("goose", "geese"),
    ("foot", "feet"), ("tooth", "teeth"), ("ox", "oxen"), ("louse", "lice"),
    ("sheep", "sheep"), ("deer", "deer"), ("fish", "fish"), ("moose", "moose"), ("series", "series"), ("species", "species"),
    ("aircraft", "aircraft"),
    ("cactus", "cacti"), ("fungus", "fungi"), ("nucleus", "nuclei"), ("stimulus", "stimuli"), ("crisis", "crises"),
    ("analysis", "analyses"), ("thesis", "theses"), ("oasis", "oases"), ("criterion", "criteria"), ("phenomenon", "phenomena"),
    ("bacterium", "bacteria"), ("datum", "data"), ("medium", "media"), ("curriculum", "curricula"), ("larva", "larvae"),
    ("formula", "formulas"), ("appendix", "appendices"), ("matrix", "matrices"), ("vertex", "vertices"), ("axis", "axes"),
    ("dwarf", "dwarfs"), ("scarf", "scarves"), ("hoof", "hooves"), ("domino", "dominoes"), ("volcano", "volcanoes"),
    ("studio", "studios"), ("kangaroo", "kangaroos"), ("quiz", "quizzes"), ("index", "indexes"), ("penny", "pennies"),
]


def plural_wrongs(s, p):
    cands = [s + "s", s + "es", s + "ies", s[:-1] + "ies" if s.endswith("y") else s + "en",
             s[:-1] + "ves" if s.endswith("f") else s + "ves", s[:-2] + "ves" if s.endswith("fe") else s + "zes",
             p + "s", p + "es", s + "i", s + "a", s[:-2] + "i" if s.endswith("us") else s + "ae"]
    seen, out = set(), []
    for c in cands:
        if c != p and c != s and c not in seen:
            seen.add(c)
            out.append(c)
    return out


def plurals(rng):
    out = []
    for s, p in PLURALS:
        wrongs = plural_wrongs(s, p)
        rng.shuffle(wrongs)
        # Prefer the most tempting wrong forms: the regular ones.
        regular = [w for w in (s + "s", s + "es") if w in wrongs]
        pick = regular[:1] + [w for w in wrongs if w not in regular[:1]]
        out.append(mc(rng, f'What is the plural of "{s}"?', p, pick[:3]))
    return out


# === compare: which of two numbers is larger ===
def compare(rng):
    out, seen = [], set()

    def add(a, b):
        if a == b or (a, b) in seen or (b, a) in seen:
            return
        seen.add((a, b))
        hi = max(a, b, key=float)
        out.append(mc_fixed(f"Which is larger, {a} or {b}?", [str(a), str(b)], [str(a), str(b)].index(str(hi))))

    while len(out) < 36:  # two-digit numbers with swapped digits (near boundary; all 36 pairs)
        x, y = rng.randint(1, 9), rng.randint(1, 9)
        if x != y:
            a, b = 10 * x + y, 10 * y + x
            add(*((a, b) if rng.random() < 0.5 else (b, a)))
    while len(out) < 60:  # two-digit numbers one apart
        a = rng.randint(10, 98)
        add(*((a, a + 1) if rng.random() < 0.5 else (a + 1, a)))
    while len(out) < 110:  # three-digit numbers differing in one digit
        a = rng.randint(100, 999)
        d = rng.choice([1, 10, 100])
        b = a + d * rng.choice([-1, 1]) * rng.randint(1, 3)
        if 100 <= b <= 999:
            add(*((a, b) if rng.random() < 0.5 else (b, a)))
    while len(out) < 150:  # different lengths (e.g. 999 vs 1001)
        a = rng.randint(80, 999)
        b = rng.randint(1000, 1200) if a > 500 else rng.randint(5, 79)
        add(*((a, b) if rng.random() < 0.5 else (b, a)))
    while len(out) < 200:  # far apart
        a, b = rng.randint(1, 50), rng.randint(200, 5000)
        add(*((a, b) if rng.random() < 0.5 else (b, a)))
    return out


# === science: hand-written everyday facts (question, right, three wrong) ===
FACTS = [
    ("What gas do plants take in from the air to make their food?", "carbon dioxide", ["oxygen", "nitrogen", "helium"]),
    ("What gas do plants give off when they make food from sunlight?", "oxygen", ["carbon dioxide", "hydrogen", "smoke"]),
    ("At what temperature does pure water freeze at sea level?", "0 degrees Celsius", ["10 degrees Celsius", "50 degrees Celsius", "100 degrees Celsius"]),
    ("At what temperature does pure water boil at sea level?", "100 degrees Celsius", ["0 degrees Celsius", "50 degrees Celsius", "200 degrees Celsius"]),
    ("At what temperature in Fahrenheit does water freeze?", "32 degrees", ["0 degrees", "100 degrees", "212 degrees"]),
    ("Which planet is closest to the Sun?", "Mercury", ["Venus", "Earth", "Mars"]),
    ("Which is the largest planet in our solar system?", "Jupiter", ["Earth", "Mars", "Mercury"]),
    ("Which planet is known as the Red Planet?", "Mars", ["Venus", "Jupiter", "Neptune"]),
    ("Which planet is famous for its large bright rings?", "Saturn", ["Mars", "Mercury", "Venus"]),
    ("Which is the hottest planet in our solar system?", "Venus", ["Mercury", "Mars", "Jupiter"]),
    ("How many planets are in our solar system?", "eight", ["nine", "seven", "twelve"]),
    ("What is the star at the center of our solar system?", "the Sun", ["the Moon", "Polaris", "Sirius"]),
    ("What is the natural satellite that orbits the Earth?", "the Moon", ["the Sun", "Mars", "a comet"]),
    ("What mainly causes the ocean tides?", "the pull of the Moon", ["the wind", "earthquakes", "fish swimming"]),
    ("About how many days does the Earth take to travel once around the Sun?", "365", ["30", "7", "1000"]),
    ("How long does the Earth take to spin once on its axis?", "one day", ["one week", "one month", "one year"]),
    ("What force pulls objects toward the ground?", "gravity", ["magnetism", "friction", "electricity"]),
    ("How many legs does an insect have?", "six", ["four", "eight", "ten"]),
    ("How many legs does a spider have?", "eight", ["six", "four", "ten"]),
    ("Which organ pumps blood around the body?", "the heart", ["the lungs", "the liver", "the stomach"]),
    ("Which organs do we use to breathe?", "the lungs", ["the kidneys", "the heart", "the stomach"]),
    ("Which organ do we think with?", "the brain", ["the heart", "the liver", "the lungs"]),
    ("What is the largest organ of the human body?", "the skin", ["the liver", "the brain", "the heart"]),
    ("About how many bones does an adult human have?", "206", ["106", "306", "26"]),
    ("Which blood cells help the body fight infection?", "white blood cells", ["red blood cells", "platelets", "nerve cells"]),
    ("Which vitamin does our skin make when exposed to sunlight?", "vitamin D", ["vitamin C", "vitamin A", "vitamin K"]),
    ("What gas do humans breathe out?", "carbon dioxide", ["oxygen", "helium", "chlorine"]),
    ("Which gas makes up most of the air we breathe?", "nitrogen", ["oxygen", "carbon dioxide", "hydrogen"]),
    ("What do we call the process by which plants make food using sunlight?", "photosynthesis", ["digestion", "evaporation", "fermentation"]),
    ("What is it called when liquid water turns into vapour?", "evaporation", ["condensation", "freezing", "melting"]),
    ("What is it called when water vapour turns back into liquid?", "condensation", ["evaporation", "melting", "erosion"]),
    ("What is it called when ice turns into liquid water?", "melting", ["freezing", "condensation", "boiling"]),
    ("What is frozen water called?", "ice", ["steam", "fog", "dew"]),
    ("What are clouds mostly made of?", "tiny drops of water", ["smoke", "cotton", "sand"]),
    ("What is the chemical formula of water?", "H2O", ["CO2", "O2", "NaCl"]),
    ("What is the chemical symbol of gold?", "Au", ["Ag", "Gd", "Go"]),
    ("What is the chemical symbol of iron?", "Fe", ["Ir", "In", "I"]),
    ("Which metal is liquid at room temperature?", "mercury", ["iron", "copper", "aluminium"]),
    ("What do magnets attract?", "iron", ["wood", "plastic", "glass"]),
    ("What does a thermometer measure?", "temperature", ["weight", "length", "time"]),
    ("Which instrument do we use to look at very small things?", "a microscope", ["a telescope", "a periscope", "a thermometer"]),
    ("Which instrument do we use to look at distant stars?", "a telescope", ["a microscope", "a stethoscope", "a barometer"]),
    ("What do doctors use to listen to a heartbeat?", "a stethoscope", ["a telescope", "a microscope", "a ruler"]),
    ("What gives plants their green colour?", "chlorophyll", ["melanin", "hemoglobin", "keratin"]),
    ("Which part of a plant takes up water from the soil?", "the roots", ["the leaves", "the flowers", "the fruit"]),
    ("What do bees make from flower nectar?", "honey", ["milk", "silk", "cheese"]),
    ("What does a caterpillar become?", "a butterfly", ["a spider", "a beetle", "a worm"]),
    ("What does a tadpole grow into?", "a frog", ["a fish", "a snake", "a bird"]),
    ("What do fish use to breathe?", "gills", ["lungs", "fins", "scales"]),
    ("Which bird cannot fly?", "the penguin", ["the eagle", "the sparrow", "the pigeon"]),
    ("What is the largest animal that has ever lived?", "the blue whale", ["the elephant", "the giraffe", "the hippo"]),
    ("What is the tallest animal alive today?", "the giraffe", ["the elephant", "the horse", "the camel"]),
    ("What is the fastest land animal?", "the cheetah", ["the horse", "the lion", "the rabbit"]),
    ("How many hearts does an octopus have?", "three", ["one", "two", "eight"]),
    ("What do we call animals that eat only plants?", "herbivores", ["carnivores", "omnivores", "predators"]),
    ("What do we call animals that eat only meat?", "carnivores", ["herbivores", "omnivores", "producers"]),
    ("What is a baby dog called?", "a puppy", ["a kitten", "a calf", "a foal"]),
    ("What is a baby cat called?", "a kitten", ["a puppy", "a lamb", "a cub"]),
    ("What is a baby cow called?", "a calf", ["a foal", "a kid", "a chick"]),
    ("What is a baby horse called?", "a foal", ["a calf", "a puppy", "a duckling"]),
    ("What is a baby sheep called?", "a lamb", ["a kitten", "a foal", "a piglet"]),
    ("What is a group of wolves called?", "a pack", ["a herd", "a flock", "a school"]),
    ("What is a group of fish swimming together called?", "a school", ["a pack", "a herd", "a pride"]),
    ("What is a group of sheep called?", "a flock", ["a pack", "a school", "a swarm"]),
    ("Which sense do we use our ears for?", "hearing", ["smell", "taste", "sight"]),
    ("Which sense do we use our nose for?", "smell", ["hearing", "touch", "sight"]),
    ("What shape is the Earth, roughly?", "a sphere", ["a cube", "a flat disc", "a pyramid"]),
    ("How many continents are there on Earth?", "seven", ["five", "nine", "twelve"]),
    ("Which is the largest ocean on Earth?", "the Pacific Ocean", ["the Atlantic Ocean", "the Indian Ocean", "the Arctic Ocean"]),
    ("Which of these is a renewable source of energy?", "wind", ["coal", "oil", "natural gas"]),
    ("What kind of energy does a battery store?", "chemical energy", ["sound energy", "nuclear energy", "light energy"]),
    ("Which scientist studies rocks and the Earth?", "a geologist", ["a biologist", "an astronomer", "a chemist"]),
    ("Which scientist studies stars and planets?", "an astronomer", ["a geologist", "a botanist", "a zoologist"]),
    ("Which scientist studies plants?", "a botanist", ["an astronomer", "a geologist", "a physicist"]),
    ("Through which of these does sound travel fastest?", "steel", ["air", "water", "empty space"]),
    ("Which travels faster, light or sound?", "light", ["sound", "they are equally fast", "neither moves"]),
    ("What is the hardest natural material?", "diamond", ["gold", "iron", "marble"]),
    ("What is the center of an atom called?", "the nucleus", ["the electron", "the shell", "the cell"]),
    ("What is the basic unit of life?", "the cell", ["the atom", "the organ", "the bone"]),
    ("What do we call the layer of gases around the Earth?", "the atmosphere", ["the crust", "the core", "the ocean"]),
    ("What is the hot liquid rock that comes out of a volcano called?", "lava", ["ice", "sand", "clay"]),
    ("Which season comes after winter?", "spring", ["summer", "autumn", "winter again"]),
    ("What colour do you get by mixing blue and yellow paint?", "green", ["purple", "orange", "red"]),
    ("What colour do you get by mixing red and white paint?", "pink", ["green", "blue", "black"]),
    ("What is the main ingredient of bread?", "flour", ["sugar", "rice", "butter"]),
    ("Which food comes from cows?", "milk", ["eggs", "honey", "rice"]),
    ("Which of these is a source of protein?", "eggs", ["sugar", "water", "salt"]),
    ("Why do we wear sunscreen?", "to protect the skin from sunburn", ["to keep warm", "to see better", "to grow taller"]),
    ("What happens to most metals when they are heated?", "they expand", ["they shrink", "they turn to gas at once", "they become magnetic"]),
    ("Which direction does a compass needle point?", "north", ["east", "west", "down"]),
]

# Category items: "Which of these is a mammal?" — one member and three non-members.
CATEGORIES = {
    "a mammal": ["dog", "whale", "bat", "horse", "elephant", "dolphin", "mouse", "lion", "cow", "rabbit", "monkey", "bear"],
    "a bird": ["eagle", "sparrow", "owl", "penguin", "parrot", "duck", "ostrich", "robin", "crow", "swan"],
    "a fish": ["salmon", "trout", "shark", "tuna", "cod", "goldfish", "carp", "herring"],
    "an insect": ["ant", "bee", "butterfly", "beetle", "mosquito", "grasshopper", "ladybird", "wasp"],
    "a reptile": ["snake", "lizard", "crocodile", "turtle", "tortoise", "iguana", "gecko", "chameleon"],
    "a metal": ["iron", "copper", "gold", "silver", "aluminium", "tin", "zinc", "lead"],
    "a planet": ["Mars", "Venus", "Jupiter", "Saturn", "Neptune", "Mercury", "Uranus"],
    "a fruit": ["apple", "banana", "orange", "grape", "mango", "pear", "cherry", "strawberry"],
    "a vegetable": ["carrot", "potato", "onion", "cabbage", "spinach", "lettuce", "broccoli", "pea"],
}
NOT_IN = {
    "a mammal": ["bird", "fish", "insect", "reptile"],
    "a bird": ["mammal", "fish", "insect", "reptile"],
    "a fish": ["mammal", "bird", "insect", "reptile"],
    "an insect": ["mammal", "bird", "fish", "reptile"],
    "a reptile": ["mammal", "bird", "fish", "insect"],
    "a metal": [],
    "a planet": [],
    "a fruit": ["vegetable"],
    "a vegetable": ["fruit"],
}
NON_METALS = ["wood", "glass", "plastic", "paper", "rubber", "stone", "cotton", "wool"]
NON_PLANETS = ["the Moon", "the Sun", "a comet", "Polaris", "Sirius", "an asteroid", "the Milky Way"]


def science(rng):
    out = [mc(rng, q, right, list(wrong)) for q, right, wrong in FACTS]
    key = {"mammal": "a mammal", "bird": "a bird", "fish": "a fish", "insect": "an insect", "reptile": "a reptile",
           "fruit": "a fruit", "vegetable": "a vegetable"}
    for cat, members in CATEGORIES.items():
        if cat == "a metal":
            others = NON_METALS
        elif cat == "a planet":
            others = NON_PLANETS
        else:
            others = [x for k in NOT_IN[cat] for x in CATEGORIES[key[k]]]
        for m in members:
            wrong = rng.sample(others, 3)
            out.append(mc(rng, f"Which of these is {cat}?", m, wrong))
    return out


KL_PROMPTS = [
    "Explain why the sky is blue.", "Write a short poem about the sea.", "Give me three tips for sleeping better.",
    "How do I make a cup of tea?", "Describe a sunny day at the beach.", "What are the benefits of regular exercise?",
    "Tell me a fun fact about cats.", "What is the capital of Italy, and what is it famous for?",
    "How many legs does a spider have?", "What is 12 plus 30?", "Summarise the story of Little Red Riding Hood.",
    "Why do leaves change colour in autumn?", "Suggest a name for a small bakery.", "How does a rainbow form?",
    "What should I pack for a weekend hiking trip?", "Write a polite email declining a meeting invitation.",
    "What is the difference between weather and climate?", "Give me a simple recipe for pancakes.",
    "Why is it important to drink water?", "Explain what a computer program is to a child.",
    "What are some good habits for studying?", "Describe the life cycle of a butterfly.",
    "Which is larger, 47 or 74?", "What is the opposite of generous?", "Translate 'thank you' into French.",
    "How do plants make their food?", "Tell me a short joke about a dog.", "What causes thunder?",
    "List three animals that live in the ocean.", "How can I save money on groceries?",
    "What does a firefighter do?", "Why do we have seasons on Earth?",
]


def mc(rng, question, right, wrong):
    assert right not in wrong and len(set(wrong)) == len(wrong), (question, right, wrong)
    choices = wrong + [right]
    rng.shuffle(choices)
    return {"question": question, "choices": choices, "answer": choices.index(right)}


def mc_fixed(question, choices, answer):
    return {"question": question, "choices": choices, "answer": answer}


def write(name, rows):
    path = DATA / f"{name}.jsonl"
    with path.open("w") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"{path}: {len(rows)} lines")


def main():
    DATA.mkdir(exist_ok=True)
    write("capitals", capitals(random.Random(101)))
    write("opposites", opposites(random.Random(102)))
    write("plurals", plurals(random.Random(103)))
    # compare(random.Random(104)) is not shipped: by log-likelihood the default model scored 0.48 on it
    # (chance 0.50), see data/PROVENANCE.md.
    write("science", science(random.Random(105)))
    write("kl_prompts", [{"prompt": p} for p in KL_PROMPTS])


if __name__ == "__main__":
    main()
