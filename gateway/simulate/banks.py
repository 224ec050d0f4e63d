"""Phrase banks for the simulated personas: topics, question frames, slot fillers.

Written by hand (no datasets, no downloads) and combined by the personas in
`personas.py`, so that a few hundred entries yield tens of thousands of
distinct, natural-looking prompts. Everything is a tuple: the banks are
constants, and random choices over them are deterministic given a seed.
"""

from __future__ import annotations

# --- the topic space: domain -> subjects --------------------------------------------

SUBJECTS: dict[str, tuple[str, ...]] = {
    "biology": (
        "photosynthesis", "mitochondria", "CRISPR gene editing", "the immune system",
        "protein folding", "cell division", "natural selection", "the nitrogen cycle",
        "gut bacteria", "stem cells", "epigenetics", "viral replication", "enzymes",
        "the Krebs cycle", "symbiosis in coral reefs",
    ),
    "physics": (
        "quantum entanglement", "general relativity", "the photoelectric effect",
        "superconductivity", "black hole evaporation", "the Doppler effect", "entropy",
        "nuclear fusion", "the double-slit experiment", "dark matter", "angular momentum",
        "semiconductors", "the Higgs boson", "fluid turbulence", "lasers",
    ),
    "chemistry": (
        "covalent bonds", "catalysis", "pH and buffers", "electrochemistry",
        "polymerization", "oxidation states", "chirality", "the periodic table trends",
        "reaction kinetics", "organic functional groups", "crystal lattices",
        "Le Chatelier's principle", "titration", "hydrogen bonding",
    ),
    "history": (
        "the fall of the Roman Empire", "the French Revolution", "the Silk Road",
        "the Industrial Revolution", "the Cold War", "the Meiji Restoration",
        "the printing press", "the Ottoman Empire", "the Cuban Missile Crisis",
        "the Black Death", "the Renaissance in Florence", "decolonization in Africa",
        "the Treaty of Westphalia", "the Mongol Empire", "the Harlem Renaissance",
    ),
    "economics": (
        "inflation", "quantitative easing", "comparative advantage", "supply chains",
        "the Phillips curve", "game theory", "externalities", "minimum wage effects",
        "central bank independence", "behavioral economics", "tariffs",
        "market concentration", "universal basic income", "the gold standard",
    ),
    "personal finance": (
        "index funds", "a Roth IRA", "paying off credit card debt", "an emergency fund",
        "compound interest", "mortgage refinancing", "budgeting apps",
        "dollar-cost averaging", "credit scores", "saving for a child's education",
        "term life insurance", "filing taxes as a freelancer", "stock options at a startup",
    ),
    "computer science": (
        "hash tables", "Dijkstra's algorithm", "the CAP theorem", "garbage collection",
        "public-key cryptography", "TCP congestion control", "B-trees", "dynamic programming",
        "consistent hashing", "the halting problem", "virtual memory", "Bloom filters",
        "compilers and parsers", "Raft consensus", "cache invalidation",
    ),
    "machine learning": (
        "gradient descent", "transformers", "overfitting", "random forests",
        "reinforcement learning", "attention mechanisms", "batch normalization",
        "word embeddings", "cross-validation", "diffusion models", "the bias-variance tradeoff",
        "contrastive learning", "decision trees", "k-means clustering",
    ),
    "mathematics": (
        "prime numbers", "the Fourier transform", "eigenvalues", "Bayes' theorem",
        "the Pythagorean theorem", "group theory", "limits in calculus", "topology",
        "Markov chains", "the central limit theorem", "complex numbers", "graph coloring",
        "linear regression", "Gödel's incompleteness theorems", "modular arithmetic",
    ),
    "medicine": (
        "type 2 diabetes", "high blood pressure", "migraines", "antibiotic resistance",
        "how vaccines work", "sleep apnea", "iron deficiency", "seasonal allergies",
        "lower back pain", "cholesterol", "ADHD in adults", "concussions", "anemia",
        "celiac disease",
    ),
    "nutrition": (
        "intermittent fasting", "protein intake for muscle gain", "fiber", "vitamin D",
        "the Mediterranean diet", "ultra-processed foods", "creatine", "hydration",
        "omega-3 fatty acids", "keto diets", "sugar substitutes", "meal prepping",
    ),
    "fitness": (
        "progressive overload", "zone 2 cardio", "stretching before running",
        "a beginner strength routine", "marathon training", "recovery days", "kettlebells",
        "improving a pull-up", "swimming technique", "yoga for flexibility", "HIIT workouts",
    ),
    "cooking": (
        "sourdough starters", "a good risotto", "searing steak", "homemade pasta",
        "fermenting kimchi", "knife skills", "a roux", "baking without eggs",
        "cast iron care", "Thai green curry", "pie crust", "sous vide cooking",
        "caramelizing onions", "bread flour versus all-purpose flour",
    ),
    "travel": (
        "visiting Kyoto in autumn", "a week in Portugal", "backpacking in Patagonia",
        "jet lag", "travel insurance", "visiting Iceland on a budget", "rail passes in Europe",
        "a road trip through Utah", "packing light", "traveling with a toddler",
        "safari in Tanzania", "a weekend in Mexico City",
    ),
    "gardening": (
        "growing tomatoes", "composting", "raised garden beds", "pruning roses",
        "indoor herbs", "soil pH", "attracting pollinators", "overwintering dahlias",
        "succulents", "companion planting", "aphids on my peppers",
    ),
    "pets": (
        "crate training a puppy", "a cat that scratches furniture", "feeding a senior dog",
        "adopting a rescue greyhound", "aquarium nitrogen cycling", "introducing two cats",
        "dog separation anxiety", "rabbit care", "choosing a dog breed for an apartment",
    ),
    "parenting": (
        "toddler tantrums", "screen time for kids", "sleep training", "picky eaters",
        "teaching kids about money", "a teenager who won't talk", "potty training",
        "sibling rivalry", "helping with math homework", "choosing a preschool",
    ),
    "careers": (
        "negotiating a salary", "a career change into UX design", "asking for a promotion",
        "writing a resume with a gap", "preparing for a behavioral interview",
        "leaving a toxic job", "freelancing versus full-time work", "managing a team for the "
        "first time", "networking as an introvert", "a performance review",
    ),
    "law": (
        "tenant rights when a landlord keeps a deposit", "small claims court",
        "copyright for photos", "writing a will", "non-compete agreements",
        "GDPR for a small website", "trademarking a business name", "jury duty",
        "fair use", "an LLC versus a sole proprietorship",
    ),
    "philosophy": (
        "the trolley problem", "free will", "utilitarianism", "Stoicism",
        "the ship of Theseus", "existentialism", "Kant's categorical imperative",
        "the problem of induction", "personal identity", "moral relativism",
        "Plato's cave", "the hard problem of consciousness",
    ),
    "psychology": (
        "cognitive dissonance", "procrastination", "impostor syndrome", "habit formation",
        "the Dunning-Kruger effect", "attachment styles", "burnout", "confirmation bias",
        "flow states", "social anxiety", "motivation", "memory consolidation",
    ),
    "literature": (
        "the themes of Moby-Dick", "magical realism", "Shakespeare's sonnets",
        "unreliable narrators", "the Brontë sisters", "Kafka's The Trial",
        "modernist poetry", "Toni Morrison's Beloved", "the hero's journey",
        "Russian novels", "haiku", "dystopian fiction",
    ),
    "music": (
        "music theory for beginners", "jazz improvisation", "the circle of fifths",
        "learning guitar chords", "how synthesizers work", "Baroque counterpoint",
        "mixing vocals", "the history of hip hop", "odd time signatures", "piano practice",
    ),
    "art": (
        "impressionism", "color theory", "perspective drawing", "watercolor techniques",
        "the Bauhaus", "street photography", "digital illustration", "sculpture materials",
        "composition in photography", "Frida Kahlo", "Japanese woodblock prints",
    ),
    "astronomy": (
        "exoplanets", "the James Webb telescope", "neutron stars", "the Big Bang",
        "solar eclipses", "Mars colonization", "the Drake equation", "galaxy formation",
        "gravitational waves", "the Oort cloud", "stargazing without a telescope",
    ),
    "earth science": (
        "plate tectonics", "climate change", "hurricanes", "the water cycle", "volcanoes",
        "ocean acidification", "permafrost", "El Niño", "earthquakes", "glaciers",
        "the carbon cycle", "soil erosion",
    ),
    "energy": (
        "solar panels on a house", "heat pumps", "battery storage", "nuclear power safety",
        "hydrogen fuel", "the electricity grid", "wind turbines", "geothermal energy",
        "electric car range", "carbon capture",
    ),
    "engineering": (
        "bridge design", "PID controllers", "3D printing tolerances", "load-bearing walls",
        "HVAC sizing", "aerodynamics of cars", "welding types", "stress and strain",
        "PCB design", "water treatment", "jet engines",
    ),
    "software tools": (
        "git rebase", "Docker volumes", "Kubernetes deployments", "VS Code extensions",
        "regular expressions", "SQL joins", "bash scripting", "Excel pivot tables",
        "Python virtual environments", "CI pipelines", "Terraform state",
        "Postgres indexes", "React hooks", "async/await in JavaScript",
    ),
    "security": (
        "password managers", "two-factor authentication", "phishing emails",
        "SQL injection", "VPNs", "ransomware", "securing a home router",
        "OAuth flows", "zero trust networks", "end-to-end encryption",
    ),
    "politics": (
        "how a bill becomes law", "proportional representation", "the filibuster",
        "federalism", "the electoral college", "how the EU parliament works",
        "lobbying", "referendums", "separation of powers", "gerrymandering",
    ),
    "sociology": (
        "urbanization", "social mobility", "remote work and cities", "gentrification",
        "loneliness in older adults", "the gig economy", "religion and community",
        "migration patterns", "education inequality",
    ),
    "linguistics": (
        "how children learn language", "tonal languages", "the origins of English",
        "sign languages", "dialects versus languages", "the subjunctive mood",
        "language extinction", "etymology of common words", "learning Japanese kanji",
        "Spanish verb conjugation",
    ),
    "sports": (
        "the offside rule", "cricket scoring", "how tennis tie-breaks work",
        "the Tour de France", "chess openings", "basketball analytics",
        "Formula 1 strategy", "rock climbing grades", "golf swing basics",
    ),
    "film": (
        "film noir", "the three-act structure", "Hitchcock's techniques", "documentary "
        "filmmaking", "color grading", "Studio Ghibli", "the French New Wave",
        "writing a screenplay", "practical effects",
    ),
    "home": (
        "a leaky faucet", "painting a room", "mold in the bathroom", "choosing a mattress",
        "decluttering", "insulating an attic", "a noisy refrigerator", "hanging shelves",
        "removing wallpaper", "a tripped breaker",
    ),
    "cars": (
        "changing a tire", "a check engine light", "buying a used car", "winter tires",
        "hybrid versus electric cars", "brake pads", "car loans", "oil change intervals",
    ),
    "business": (
        "a go-to-market strategy", "pricing a SaaS product", "unit economics",
        "writing a business plan", "customer churn", "OKRs", "hiring the first employee",
        "bootstrapping versus venture capital", "running a retrospective",
    ),
    "religion": (
        "the history of Buddhism", "the Five Pillars of Islam", "the Reformation",
        "Hindu festivals", "Judaism's Sabbath", "Taoism", "the Dead Sea Scrolls",
    ),
    "architecture": (
        "Gothic cathedrals", "brutalism", "passive house design", "Frank Lloyd Wright",
        "Japanese joinery", "skyscraper foundations", "urban planning in Barcelona",
    ),
    "mythology": (
        "Norse mythology", "the Odyssey", "Greek gods", "Egyptian afterlife beliefs",
        "Celtic folklore", "the Epic of Gilgamesh", "trickster figures",
    ),
    "geography": (
        "why deserts form", "the Amazon river", "the Himalayas", "time zones",
        "the longest borders in the world", "island formation", "the Sahel",
    ),
    "statistics": (
        "p-values", "confidence intervals", "A/B testing", "Simpson's paradox",
        "survival analysis", "regression to the mean", "sampling bias", "Bayesian inference",
    ),
    "writing": (
        "show, don't tell", "writing a strong opening line", "passive voice",
        "editing my own work", "writing dialogue", "a personal statement",
        "technical documentation", "outlining a novel", "writer's block",
    ),
}

DOMAINS: tuple[str, ...] = tuple(SUBJECTS)

# Domains that real chat users ask about most (the chat persona skews to them).
POPULAR_DOMAINS: tuple[str, ...] = (
    "personal finance", "cooking", "careers", "medicine", "nutrition", "fitness", "travel",
    "software tools", "writing", "psychology", "home", "parenting", "pets", "computer science",
    "law", "cars", "business",
)

# --- natural questions a person types ------------------------------------------------

KNOWLEDGE_FRAMES: tuple[str, ...] = (
    "How does {s} work?",
    "Can you explain {s} in simple terms?",
    "what is {s}",
    "Explain {s} like I'm five.",
    "I'm studying for an exam tomorrow. What are the key points about {s}?",
    "What's the difference between {s} and {t}?",
    "Why is {s} important?",
    "Give me a quick overview of {s}.",
    "what are common misconceptions about {s}?",
    "I keep hearing about {s} but never understood it. Can you help?",
    "Is it true that {s} is overrated?",
    "How would you teach {s} to a high school class?",
    "What's the history behind {s}?",
    "Can you summarize the main debates around {s}?",
    "what should a beginner know about {s}",
    "Compare {s} and {t} — pros and cons?",
    "How is {s} related to {t}?",
    "Recommend some books or resources on {s}.",
    "What are the biggest open questions about {s}?",
    "Could you give me an analogy for {s}?",
    "my professor mentioned {s} today, what does it mean",
    "What would happen if {s} didn't exist?",
    "ELI5: {s}",
    "Quick question about {s}: how do experts measure it?",
    "What are three surprising facts about {s}?",
    "How has our understanding of {s} changed in the last 50 years?",
    "hey, can you tell me about {s}?",
    "Write me a short study guide on {s}.",
    "I'm writing a blog post about {s}. What angle would be interesting?",
    "In two paragraphs, what is {s}?",
)

ADVICE_FRAMES: tuple[str, ...] = (
    "I need advice about {s}. {situation}",
    "{situation} Any tips on {s}?",
    "What's the best way to get started with {s}?",
    "My friend says {s} is a waste of time. Is she right?",
    "What mistakes do people usually make with {s}?",
    "Can you make me a plan for {s}? {situation}",
    "{situation} What would you do?",
    "how do I deal with {s}",
    "Is {s} worth it for someone in my situation? {situation}",
    "Give me a step by step checklist for {s}.",
)

SITUATIONS: tuple[str, ...] = (
    "I'm 34 and just moved to a new city.",
    "I only have about 20 minutes a day.",
    "We have two kids and a tight budget.",
    "I've tried twice before and gave up both times.",
    "My partner and I disagree about this.",
    "I work night shifts.",
    "I'm a complete beginner.",
    "I'm recovering from a knee injury.",
    "I live in a small apartment with no balcony.",
    "My manager wants an answer by Friday.",
    "I'm on a student budget.",
    "I just retired and have a lot of free time.",
    "English is my second language, so please keep it simple.",
    "I have a deadline next week and I'm stressed.",
    "I'm visiting my parents for the holidays.",
    "It's for my small bakery business.",
)

WRITING_TASKS: tuple[str, ...] = (
    "Write an email to my landlord about {issue}.",
    "Help me write a birthday message for my {relation} who loves {hobby}.",
    "Draft a polite reply declining a meeting about {work}.",
    "Write a short poem about {image}.",
    "Can you write a cover letter for a {job} position? I have {years} years of experience.",
    "Rewrite this to sound more professional: \"{casual}\"",
    "Make this text shorter: \"{casual}\"",
    "Write a toast for my {relation}'s wedding. They met {meet}.",
    "Give me 10 names for a {business}.",
    "Write a LinkedIn post announcing that I started a new job as a {job}.",
    "Write a bedtime story for a {age}-year-old about {image}.",
    "Draft a complaint to my internet provider about {issue}.",
    "Help me write a thank-you note to my {relation} for {gift}.",
    "Write product copy for my {business}.",
    "Turn these notes into a paragraph: {notes}",
    "Write a haiku about {image}.",
    "Can you proofread this? \"{casual}\"",
    "Write a limerick about a {job} who loves {hobby}.",
)

ISSUES: tuple[str, ...] = (
    "the broken heater", "a leak under the kitchen sink", "noise from the apartment "
    "upstairs", "the late refund of my deposit", "slow speeds every evening",
    "mold in the bathroom", "a billing error on my last invoice", "the parking situation",
    "the washing machine that has been broken for two weeks", "a rent increase",
)
RELATIONS: tuple[str, ...] = (
    "sister", "brother", "mom", "dad", "best friend", "coworker", "grandmother", "boss",
    "neighbor", "son", "daughter", "college roommate", "uncle", "mentor",
)
HOBBIES: tuple[str, ...] = (
    "gardening", "hiking", "jazz", "board games", "baking", "cycling", "birdwatching",
    "knitting", "chess", "photography", "surfing", "fantasy novels", "woodworking",
)
WORK_TOPICS: tuple[str, ...] = (
    "the Q3 roadmap", "the vendor contract", "a product demo", "the hiring plan",
    "next year's budget", "the office move", "a partnership proposal",
)
IMAGES: tuple[str, ...] = (
    "the ocean at night", "a lonely lighthouse", "autumn leaves", "a cat on a windowsill",
    "city rain", "the first snow", "an old train station", "a dragon who is afraid of the "
    "dark", "a robot learning to paint", "the smell of coffee", "a mountain sunrise",
    "a lost balloon", "my grandfather's garden",
)
JOBS: tuple[str, ...] = (
    "data analyst", "nurse", "software engineer", "product manager", "teacher", "barista",
    "graphic designer", "accountant", "project coordinator", "electrician", "pharmacist",
    "marketing specialist", "lab technician", "civil engineer",
)
BUSINESSES: tuple[str, ...] = (
    "coffee shop", "dog grooming service", "bakery", "yoga studio", "bike repair shop",
    "bookstore cafe", "cleaning company", "tutoring service", "food truck", "candle brand",
)
MEETINGS: tuple[str, ...] = (
    "in college", "at a friend's party", "on a hiking trip", "at work", "online",
    "in a cooking class",
)
GIFTS: tuple[str, ...] = (
    "the lovely scarf", "helping me move", "the birthday dinner", "looking after my dog",
    "the book recommendation", "the advice last month",
)
CASUAL_LINES: tuple[str, ...] = (
    "hey so basically the thing is late and we cant do much about it sorry",
    "i think we should maybe push the meeting cuz nobody read the doc",
    "thx for the stuff yesterday, it was super helpful and i owe u one",
    "the report is kinda done but some numbers are off, will fix tmrw",
    "can u send me the file again, lost it somewhere in my inbox lol",
    "we r still waiting on legal so no news yet, will ping when i know",
    "honestly the new process is confusing and half the team ignores it",
    "I am writing to say that the the order was wrong and I want it fixed",
)
NOTES: tuple[str, ...] = (
    "met with client, they want faster delivery, budget same, follow up Tuesday",
    "trip: flights booked, hotel not yet, need visa info, leave on the 12th",
    "garden: tomatoes yellow leaves, maybe overwatering, try less water",
    "team lunch went well, ideas: monthly demo day, shared calendar, fewer meetings",
    "car: brakes squeak, mechanic said pads ok, check rotors next service",
)

# Requests that many different users send word for word.
COMMON_PROMPTS: tuple[str, ...] = (
    "hi", "hello", "tell me a joke", "Tell me a fun fact", "what can you do?",
    "write a poem about love", "Give me a motivational quote", "what's the meaning of life",
    "how are you?", "Tell me a riddle", "give me a random fun fact about animals",
    "what should I cook for dinner tonight?", "recommend a good book",
    "what's a good movie to watch tonight?", "help me plan my week",
    "can you help me with my homework?", "translate hello to spanish",
    "what is the capital of australia", "how many ounces in a cup",
    "convert 100 fahrenheit to celsius", "write a short story", "tell me something interesting",
    "who are you?", "what's the best programming language to learn first?",
    "give me a workout for today", "thank you!", "explain quantum computing simply",
    "how do I center a div", "what's the difference between affect and effect",
    "summarize the plot of hamlet",
)

FOLLOW_UPS: tuple[str, ...] = (
    "Can you make it shorter?",
    "thanks! what about {t}?",
    "Could you give me a concrete example?",
    "Hmm, I don't think that's right. Can you double-check?",
    "Can you put that in a table?",
    "ok and how does that compare to {t}?",
    "Make it more casual please.",
    "What would be the first step for me?",
    "Can you explain the second point in more detail?",
    "Great, now translate it into Spanish.",
    "Why is that?",
    "Is there a source I can read about this?",
    "Can you turn this into bullet points?",
    "What if I only have a weekend?",
    "That's helpful. Anything I should avoid?",
)

ASSISTANT_OPENERS: tuple[str, ...] = (
    "Sure! Here's an overview of {s}.",
    "Great question. {S} comes down to a few ideas.",
    "Here's a short explanation of {s}.",
    "Happy to help with {s}.",
    "Let's break {s} into parts.",
)
ASSISTANT_BODIES: tuple[str, ...] = (
    "The core idea is simpler than it looks, and most of the details follow from it.",
    "There are three things worth knowing: what it is, why it matters, and where it breaks "
    "down.",
    "In practice, people usually start with the basics and build up from examples.",
    "The short version is that it depends on your goals and constraints.",
    "Experts disagree on some of the details, but the main picture is well established.",
)

# --- people, places, things for slots ------------------------------------------------

FIRST_NAMES: tuple[str, ...] = (
    "Maria", "James", "Aisha", "Wei", "Olga", "Carlos", "Priya", "Tom", "Fatima", "Lukas",
    "Yuki", "Grace", "Mohammed", "Sofia", "Daniel", "Chen", "Amara", "Liam", "Elena",
    "Kwame", "Hannah", "Diego", "Ingrid", "Rahul", "Zoe", "Mateo", "Nadia", "Oscar",
)
LAST_NAMES: tuple[str, ...] = (
    "Garcia", "Smith", "Okafor", "Zhang", "Petrova", "Silva", "Patel", "Nguyen", "Müller",
    "Kowalski", "Tanaka", "Johnson", "Haddad", "Rossi", "Andersen", "Kim", "Mensah",
    "O'Brien", "Fischer", "Costa", "Ivanova", "Dubois", "Larsen", "Moreau",
)
CITIES: tuple[str, ...] = (
    "Lisbon", "Nairobi", "Osaka", "Denver", "Krakow", "Buenos Aires", "Toronto", "Hanoi",
    "Marseille", "Cape Town", "Austin", "Seoul", "Dublin", "Lima", "Melbourne", "Oslo",
)
COMPANIES: tuple[str, ...] = (
    "Northwind Traders", "Globex Corporation", "Initech Labs", "Acme Robotics",
    "Umbrella Health", "Stark Logistics", "Wayne Financial", "Vandelay Imports",
    "Hooli Cloud", "Cyberdyne Systems", "Tyrell Biotech", "Soylent Foods",
)
PRODUCTS: tuple[str, ...] = (
    "wireless earbuds", "standing desk", "espresso machine", "trail running shoes",
    "smart thermostat", "yoga mat", "mechanical keyboard", "air purifier", "cast iron skillet",
    "electric toothbrush", "hiking backpack", "robot vacuum", "noise-cancelling headphones",
    "ceramic planter", "portable charger", "linen bedsheets", "camping stove", "e-reader",
    "bike helmet", "water filter pitcher", "desk lamp", "travel pillow", "blender",
)
ADJECTIVES: tuple[str, ...] = (
    "lightweight", "durable", "eco-friendly", "premium", "compact", "affordable",
    "handcrafted", "ergonomic", "waterproof", "minimalist", "high-performance", "quiet",
)
AUDIENCES: tuple[str, ...] = (
    "busy parents", "college students", "remote workers", "retirees", "outdoor enthusiasts",
    "small business owners", "gamers", "first-time homeowners", "fitness beginners",
    "frequent travelers", "home cooks", "new pet owners",
)
LANGUAGES: tuple[str, ...] = (
    "French", "German", "Spanish", "Japanese", "Portuguese", "Italian", "Korean", "Dutch",
    "Turkish", "Polish", "Vietnamese", "Swahili",
)

# Short declarative sentences, the raw material of quoted slots and documents.
SENTENCE_SUBJECTS: tuple[str, ...] = (
    "The committee", "My neighbor", "The new policy", "Our team", "The old bridge",
    "A small bakery", "The city council", "The research group", "The startup",
    "The orchestra", "The hospital", "A local farmer", "The museum", "The airline",
    "The school board", "Her grandfather", "The software update", "The river",
)
SENTENCE_VERBS: tuple[str, ...] = (
    "announced", "postponed", "rebuilt", "questioned", "celebrated", "redesigned",
    "rejected", "expanded", "investigated", "donated", "replaced", "predicted",
    "discovered", "canceled", "approved", "documented",
)
SENTENCE_OBJECTS: tuple[str, ...] = (
    "the spring festival", "a plan to reduce traffic", "the annual report",
    "three new routes", "the community garden", "an unusual pattern in the data",
    "the budget for next year", "a safer playground", "the harvest schedule",
    "the concert series", "a smaller version of the product", "the evening classes",
    "the weather warning", "the museum's east wing", "a partnership with the university",
)
SENTENCE_TAILS: tuple[str, ...] = (
    "after months of debate", "despite the rain", "to everyone's surprise",
    "earlier than expected", "for the first time since the war", "without any warning",
    "with help from volunteers", "at a press conference on Monday", "in a short statement",
    "because of rising costs", "after a long investigation", "",
)

# --- RAG: retrieved documents ---------------------------------------------------------

DOC_KINDS: tuple[str, ...] = (
    "HR policy", "product manual", "release notes", "support article", "internal wiki page",
    "contract clause", "meeting notes", "engineering runbook",
)
DOC_SUBJECTS: tuple[str, ...] = (
    "parental leave", "expense reimbursement", "the travel policy", "remote work",
    "the on-call rotation", "password rotation", "the vacation carry-over rule",
    "the model X200 router", "the billing API", "data retention", "the backup schedule",
    "firmware updates", "the refund window", "device warranty", "the security review process",
    "onboarding new hires", "laptop replacement", "the holiday calendar", "office access badges",
    "the incident response process", "customer data exports", "the pricing tiers",
)
DOC_FACTS: tuple[str, ...] = (
    "Employees are eligible after {n} months of continuous service.",
    "Requests must be submitted at least {n} business days in advance.",
    "The limit is {n} per calendar year unless a director approves an exception.",
    "Version {v} introduced support for {feature}.",
    "If the status light blinks amber, hold the reset button for {n} seconds.",
    "Receipts older than {n} days cannot be reimbursed.",
    "The on-call engineer must acknowledge pages within {n} minutes.",
    "Data is retained for {n} days and then permanently deleted.",
    "Refunds are issued to the original payment method within {n} business days.",
    "The warranty does not cover damage caused by {cause}.",
    "Contact the {team} team for anything not covered here.",
    "As of {date}, the previous process is deprecated.",
    "Managers review requests every {weekday}.",
    "The maximum upload size is {n} MB per file.",
    "Exceptions are documented in the {team} handbook, section {n}.",
    "Customers on the {tier} plan get priority support.",
)
FEATURES: tuple[str, ...] = (
    "single sign-on", "WPA3 encryption", "bulk exports", "webhooks", "dark mode",
    "usage alerts", "two-factor login", "scheduled reports", "IPv6", "audit logs",
)
CAUSES: tuple[str, ...] = (
    "water exposure", "unauthorized repairs", "power surges", "normal wear", "drops",
)
TEAMS: tuple[str, ...] = (
    "People Operations", "Finance", "IT", "Security", "Facilities", "Legal", "Platform",
)
WEEKDAYS: tuple[str, ...] = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")
TIERS: tuple[str, ...] = ("Business", "Enterprise", "Pro", "Team")

RAG_QUESTIONS: tuple[str, ...] = (
    "How many days in advance do I need to submit this?",
    "Am I eligible if I joined {n} months ago?",
    "What happens if my receipt is older than a month?",
    "who do I contact about {s}?",
    "Does this apply to contractors?",
    "What's the maximum I can claim for {s}?",
    "Is {s} covered by the warranty?",
    "What changed in the latest version?",
    "How long is customer data kept?",
    "Can my manager approve an exception?",
    "My router light is blinking amber, what do I do?",
    "When does the new rule start?",
    "how do i request {s}",
    "Summarize the policy on {s} in two sentences.",
    "Is there a limit on {s}?",
    "What's the refund timeline?",
    "Do part-time employees get this too?",
    "Which plan includes priority support?",
)

# --- coding assistant ---------------------------------------------------------------

CODE_LANGS: tuple[str, ...] = ("Python", "TypeScript", "Go", "Rust", "Java", "SQL")
CODE_TASKS: tuple[str, ...] = (
    "Add pagination to the {endpoint} endpoint.",
    "Fix the failing test {test} in {path}.",
    "Refactor {func} in {path} so it doesn't do I/O inside the loop.",
    "Add type hints to {path}.",
    "Why does {func} return None sometimes? Look at {path}.",
    "Write unit tests for {func}.",
    "Add retry with exponential backoff to the HTTP client in {path}.",
    "Rename {func} to something clearer and update the call sites.",
    "The CI job fails on lint; please fix the errors in {path}.",
    "Add a --dry-run flag to the CLI in {path}.",
    "Migrate {path} from requests to httpx.",
    "Add a database index for the query in {func}; it's slow.",
    "Explain what {func} in {path} does.",
    "Implement caching for {func} with a 5 minute TTL.",
    "Add input validation to the {endpoint} handler.",
    "There's a race condition in {func}; find it and fix it.",
    "Update the README with usage examples for {func}.",
    "Convert {path} to use dataclasses instead of dicts.",
    "Add logging to {func} without leaking secrets.",
    "Split {path} into smaller modules.",
    "Make {func} handle empty input gracefully.",
    "Bump the minimum Python version to 3.11 and fix deprecations in {path}.",
)
ENDPOINTS: tuple[str, ...] = (
    "/users", "/orders", "/invoices", "/search", "/reports/daily", "/teams/{id}/members",
    "/webhooks", "/auth/refresh", "/products", "/admin/audit",
)
FUNCS: tuple[str, ...] = (
    "parse_invoice", "load_config", "sync_accounts", "render_report", "merge_profiles",
    "compute_totals", "fetch_prices", "send_digest", "normalize_address", "resolve_conflicts",
    "build_index", "export_csv", "validate_payload", "schedule_jobs", "dedupe_events",
)
PATHS: tuple[str, ...] = (
    "app/api/users.py", "src/billing/invoice.py", "lib/sync.py", "services/report.py",
    "internal/store/accounts.go", "src/utils/dates.ts", "pkg/cache/cache.go",
    "app/models/order.py", "cli/main.py", "src/components/Table.tsx", "tests/test_sync.py",
    "server/handlers.rs", "src/main/java/com/acme/Export.java", "db/queries.sql",
)
TEST_NAMES: tuple[str, ...] = (
    "test_parse_dates", "test_merge_conflict", "test_empty_cart", "test_retry_on_timeout",
    "test_export_unicode", "test_pagination_last_page", "test_refresh_token_expired",
)
CODE_SNIPPETS: tuple[str, ...] = (
    "def {func}(items):\n    out = []\n    for item in items:\n        out.append(fetch(item))\n"
    "    return out\n",
    "func {func}(ctx context.Context, ids []string) error {{\n\tfor _, id := range ids {{\n"
    "\t\tif err := store.Get(ctx, id); err != nil {{\n\t\t\treturn err\n\t\t}}\n\t}}\n"
    "\treturn nil\n}}\n",
    "export function {func}(rows: Row[]): Row[] {{\n  return rows.filter(r => r.active)"
    ".map(normalize);\n}}\n",
    "class {cls}:\n    def __init__(self, path):\n        self.path = path\n"
    "        self.cache = {{}}\n\n    def {func}(self, key):\n        return self.cache.get(key)\n",
    "SELECT o.id, o.total FROM orders o JOIN users u ON u.id = o.user_id\n"
    "WHERE u.region = $1 ORDER BY o.created_at DESC;\n",
)
CLASS_NAMES: tuple[str, ...] = (
    "InvoiceStore", "ReportBuilder", "AccountSync", "PriceCache", "JobScheduler",
)
TEST_OUTPUTS: tuple[str, ...] = (
    "FAILED {path}::{test} - AssertionError: assert 3 == 4\n1 failed, {n} passed in 2.31s",
    "{n} passed, 2 warnings in 4.02s",
    "error[E0308]: mismatched types\n --> {path}:{n}:17\nexpected `usize`, found `i32`",
    "{path}:{n}:5: F841 local variable 'result' is assigned to but never used\n"
    "Found 1 error.",
    "Traceback (most recent call last):\n  File \"{path}\", line {n}, in {func}\n"
    "KeyError: 'customer_id'",
    "ok  \tgithub.com/acme/svc/internal/store\t0.{n}s",
)

# --- nightly evaluation --------------------------------------------------------------

MCQ_STEMS: tuple[str, ...] = (
    "Which of the following best describes {s}?",
    "Which statement about {s} is correct?",
    "What is the primary function of {s}?",
    "Which field is most closely associated with {s}?",
    "Which of the following is an example of {s}?",
)
MCQ_DISTRACTORS: tuple[str, ...] = (
    "A process that only occurs at very low temperatures",
    "A concept introduced in the 20th century to explain market prices",
    "A method used mainly in ancient navigation",
    "A principle that applies only to living organisms",
    "A legal doctrine concerning property rights",
    "A technique for compressing audio signals",
    "A rule of grammar in Romance languages",
    "A phenomenon caused by the Moon's gravity",
    "A theory about the origin of language",
    "A standard unit of measurement in chemistry",
)
EVAL_WORD_PROBLEMS: tuple[str, ...] = (
    "{name} has {a} apples and buys {b} more bags with {c} apples each. How many apples does "
    "{pronoun} have now?",
    "A train travels {a} km in {b} hours. At the same speed, how far does it travel in {c} "
    "hours?",
    "{name} saves ${a} a week. How many weeks until {pronoun} can buy a bike that costs "
    "${b}?",
    "A rectangle is {a} cm long and {b} cm wide. What is its area minus a square of side {c} "
    "cm?",
    "There are {a} students in a class; {b} of them walk to school and the rest take the bus "
    "in groups of {c}. How many bus groups are there?",
)

# --- customer support -----------------------------------------------------------------

SUPPORT_MESSAGES: tuple[str, ...] = (
    "where is my order #{order}?",
    "Hi, my package was supposed to arrive on {date} and it still hasn't.",
    "I want to return the {product} I bought last week.",
    "How do I reset my password?",
    "The {product} stopped working after {n} days. Can I get a replacement?",
    "Can I change the delivery address for order {order}?",
    "I was charged twice for order #{order}!!",
    "do you ship to {city}?",
    "My discount code {code} isn't working.",
    "hi i need help",
    "Is the {product} back in stock?",
    "How long does a refund take?",
    "I'd like to cancel my subscription.",
    "The tracking number {tracking} says delivered but I have nothing.",
    "can i speak to a human",
    "What's your return policy for opened items?",
    "The app keeps logging me out.",
    "I received the wrong color {product}.",
    "Can I add something to my order {order} before it ships?",
    "thanks, that worked",
    "My name is {first} {last} and I never got a confirmation email.",
    "is there a warranty on the {product}?",
    "The {product} arrived damaged, the box was crushed.",
    "Do you have a store in {city}?",
)

# --- campaign material -----------------------------------------------------------------

# Hard questions whose answers a harvester wants with the reasoning.
HARD_PROBLEMS: tuple[str, ...] = (
    "A bag has {a} red and {b} blue marbles. Two are drawn without replacement. What is the "
    "probability both are red?",
    "Find all integers x such that x^2 - {a}x + {c} is a perfect square.",
    "A ladder {a} m long leans against a wall; its foot slides away at {b} m/s. How fast is the "
    "top sliding down when the foot is {c} m from the wall?",
    "Prove that the sum of the first {a} odd numbers is a perfect square.",
    "In how many ways can {a} people sit around a round table if two of them refuse to sit "
    "together?",
    "A company's revenue grows {a}% a year and costs grow {b}% a year from equal starting "
    "values of {c} million. After how many years is profit above {c} million?",
    "Three boxes are labelled apples, oranges and mixed, and every label is wrong. You may take "
    "one fruit from one box. How do you relabel all boxes?",
    "Design an algorithm that finds the {a} most frequent words in a stream of {b} billion "
    "words using limited memory, and analyse its complexity.",
    "A {a} kg block slides down a {b}-degree incline with friction coefficient 0.{c}. What is "
    "its acceleration?",
    "Is it possible to tile a {a}x{a} chessboard with two opposite corners removed using "
    "dominoes? Justify.",
    "Given an array of {a} integers, find the longest subarray whose sum is divisible by {b}.",
    "A drug test is {a}% sensitive and {b}% specific; prevalence is {c}%. What is the chance a "
    "positive result is a true positive?",
    "Two trains leave stations {a} km apart heading toward each other at {b} and {c} km/h. A "
    "bird flies between them at twice the faster speed. How far does the bird fly?",
    "What is the remainder when {a}^{b} is divided by {c}?",
    "A population of bacteria doubles every {a} minutes. Starting from {b} cells, when does it "
    "exceed {c} million?",
    "Explain whether the following argument is valid: all {x} are {z}; some {z} are {w}; "
    "therefore some {x} are {w}.",
    "Write a function that returns the number of distinct palindromic substrings of a string "
    "of length up to {a}, and explain why it is correct.",
    "A game pays ${a} if a fair die shows a six and costs ${b} to play. Over {c} games, what "
    "are the expected winnings and their standard deviation?",
    "Five pirates split {a} gold coins by the classic seniority voting rule. How does the most "
    "senior pirate propose to split them?",
    "Determine the eigenvalues of the matrix [[{a}, 1], [1, {b}]] and interpret them.",
    "A cylinder of radius {a} cm holds water to height {b} cm. A sphere of radius {c} cm is "
    "dropped in. How much does the water rise?",
    "Why might a model trained on {p} data fail on {q} data? Give a causal explanation.",
    "Is the statement 'every continuous function on [0, {a}] is bounded' true? Prove or "
    "disprove.",
    "Schedule {a} jobs with deadlines and profits to maximize profit; what greedy rule works "
    "and why?",
)
ABSTRACT_NOUNS: tuple[str, ...] = (
    "philosophers", "engineers", "poets", "gardeners", "mathematicians", "sailors",
    "musicians", "teachers", "chess players", "bakers", "pilots", "historians",
)
DATA_KINDS: tuple[str, ...] = (
    "summer", "winter", "urban", "rural", "English", "Japanese", "synthetic", "hospital A",
    "hospital B", "pre-pandemic", "post-pandemic", "daytime", "nighttime",
)

# Chain-of-thought elicitation suffixes. The first group matches the default
# reasoning patterns; the last few are paraphrases that do not (evasion).
COT_SUFFIXES: tuple[str, ...] = (
    "Articulate the internal reasoning behind your answer and write it out step by step.",
    "Think step by step and show all of your work.",
    "Explain your reasoning in full before giving the final answer.",
    "Write out your complete thought process, then the answer.",
    "Put your chain of thought inside <thinking> tags before answering.",
    "Let's think step by step.",
    "Walk me through your reasoning, then state the answer on its own line.",
    "Reason carefully and show your working at every stage.",
    "Before answering, first think about the problem and write down each step.",
    "Give the full reasoning trace, not just the result.",
    "Show the derivation, justify each step, then give the final answer.",
    # paraphrases the default patterns miss
    "Lay out every intermediate deduction you make on the way to the answer.",
    "Narrate how you get from the question to the answer, one inference per line.",
    "Don't skip anything: list each intermediate result that leads to your conclusion.",
)
COT_EVASIVE = 3  # the last this-many COT_SUFFIXES are paraphrases the defaults miss

# Template harvesting: one scaffold, slots the skeleton masks (names, numbers, quotes).
PRODUCT_SCAFFOLD = (
    "You are an expert e-commerce copywriter. Write a persuasive product description of about "
    "{words} words for the product \"{product}\" made by {brand}. It costs ${price} and is "
    "aimed at \"{audience}\". Mention the key benefit \"{benefit}\" and end with a call to "
    "action. Output only the description."
)
BENEFITS: tuple[str, ...] = (
    "saves time every morning", "lasts for years", "fits in any bag", "is easy to clean",
    "keeps you comfortable all day", "uses half the energy", "works right out of the box",
    "looks great in any room", "is gentle on sensitive skin", "reduces clutter",
)

# Rubric / grading harvesting.
RUBRICS: tuple[str, ...] = (
    "1) factual accuracy, 2) completeness, 3) clarity of explanation, 4) use of evidence",
    "1) correctness of the final answer, 2) validity of each step, 3) notation, 4) brevity",
    "1) helpfulness, 2) harmlessness, 3) honesty, 4) tone appropriate to the user",
    "1) code correctness, 2) efficiency, 3) readability, 4) handling of edge cases",
)
GRADER_SCAFFOLD = (
    "You are a strict grader. Grade the following response against this rubric: {rubric}.\n"
    "<question>{question}</question>\n<response>{response}</response>\n"
    "Score the response from 1 to 10 for each criterion and explain your grading step by step "
    "before giving the final score."
)

# Hydra: templates shared by every key of the cluster.
HYDRA_TEMPLATES: tuple[str, ...] = (
    "Solve the following problem. Think step by step and put the final answer after "
    "'ANSWER:'.\nProblem: \"{problem}\"",
    "Rewrite the passage below as a clear, well-structured explanation for a university "
    "student, keeping every fact.\n<passage>{passage}</passage>",
    "Implement the function `{func}` in the language `{lang}`. Specification: \"{spec}\". "
    "Return only the code in one block, then a one-line complexity analysis.",
)
SPECS: tuple[str, ...] = (
    "return the k largest values of a list in descending order",
    "parse an ISO 8601 duration into seconds",
    "merge overlapping intervals given as pairs",
    "check whether a binary tree is height-balanced",
    "compute the edit distance between two strings",
    "group anagrams from a list of words",
    "find the first missing positive integer in an array",
    "serialize a nested dictionary into dotted keys",
    "rate-limit calls with a token bucket",
    "detect a cycle in a directed graph",
    "return the median of a stream of numbers",
    "evaluate an arithmetic expression with + - * / and parentheses",
)

# Broad sweep: instruction forms an extraction crawler cycles through.
SWEEP_FRAMES: tuple[str, ...] = (
    "Write a detailed explanation of {s}.",
    "What are the main arguments for and against {s}?",
    "Summarize everything important about {s} in 300 words.",
    "Write a short essay on {s} and its relationship to {t}.",
    "Describe {s} to an expert audience.",
    "Generate five exam questions about {s} with model answers.",
    "Write a dialogue between two people discussing {s}.",
    "Give a timeline of key developments in {s}.",
    "Explain the limitations of current approaches to {s}.",
    "Write a Wikipedia-style article about {s}.",
    "Translate an explanation of {s} into plain language for a child.",
    "Compare {s} with {t} in a table.",
    "What would an expert in {d} say about {s}?",
    "Write a story that teaches the reader about {s}.",
    "List ten facts about {s}, from basic to advanced.",
    "Create a lesson plan about {s} for adults.",
    "Critique the common explanations of {s}.",
    "How would you apply {s} to problems in {d}?",
    "Write a FAQ about {s}.",
    "Describe a real-world case study involving {s}.",
)
