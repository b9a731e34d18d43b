#!/usr/bin/env python3
"""Writes the seed-format dataset fixtures under tests/fixtures/datasets/ (stdlib only).

The records below are hand-written, small and realistic: a text-to-SQL set, a Swiss
court-decision -> headnote set with language-pair subsets, and a MedQA-style multiple
choice set with chain-of-thought explanations ending in "the answer is (X)".
Outputs (all committed; CI never runs this script):
  sql/train.jsonl sql/test.jsonl            JSONL, compact, UTF-8 (as sftkit writes it)
  sql/train.csv sql/train.tsv               written with Python's csv module
  sql/train.csv.expected.jsonl ...          Python's csv.DictReader of those files (oracle)
  sql/train.json                            JSON array
  court/{fr_de,de_fr,it_de}/{train,validation}.jsonl
  medqa/train.jsonl medqa/test.jsonl medqa/medqa.json ({"train": [...], "test": [...]})
  finetune/prompt_completion.csv (+ .expected.jsonl): the two-column CSV of hosted
      fine-tuning services, with quotes, commas and embedded newlines
Run from the repository root: python3 scripts/gen-ds-fixtures.py
"""
import csv
import io
import json
import os

OUT = "tests/fixtures/datasets"


def dump_line(rec):
    return json.dumps(rec, ensure_ascii=False, separators=(",", ":"))


def write_jsonl(path, recs):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for r in recs:
            f.write(dump_line(r) + "\n")


def write_csv(path, recs, delimiter=","):
    keys = list(recs[0].keys())
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, delimiter=delimiter, lineterminator="\r\n")
        w.writeheader()
        for r in recs:
            w.writerow(r)
    # the oracle: what Python's csv module reads back from the committed bytes
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter=delimiter))
    write_jsonl(path + ".expected.jsonl", rows)


SQL_CTX_SALES = ("CREATE TABLE sales (id INT, region VARCHAR(20), amount DECIMAL(10,2), "
                 "sale_date DATE); INSERT INTO sales VALUES (1, 'North', 120.50, '2023-01-04'), "
                 "(2, 'South', 80.00, '2023-02-11');")
SQL = [
    ("agriculture", "basic SQL", "What is the total yield of corn in 2022?",
     "CREATE TABLE crops (id INT, crop VARCHAR(20), yield_tons INT, year INT); INSERT INTO crops VALUES (1, 'corn', 120, 2022), (2, 'wheat', 90, 2022);",
     "SELECT SUM(yield_tons) FROM crops WHERE crop = 'corn' AND year = 2022;",
     "This query sums the yield_tons column for rows where crop is corn and year is 2022."),
    ("retail", "aggregation", "What is the average sale amount per region?", SQL_CTX_SALES,
     "SELECT region, AVG(amount) FROM sales GROUP BY region;",
     "The query groups the sales table by region and computes the average amount in each group."),
    ("retail", "basic SQL", "List all sales made in February 2023.", SQL_CTX_SALES,
     "SELECT * FROM sales WHERE sale_date BETWEEN '2023-02-01' AND '2023-02-28';",
     "Filters sales whose sale_date falls within February 2023."),
    ("healthcare", "single join", "How many patients did each doctor see?",
     "CREATE TABLE doctors (id INT, name TEXT); CREATE TABLE visits (id INT, doctor_id INT, patient_id INT);",
     "SELECT d.name, COUNT(DISTINCT v.patient_id) FROM doctors d JOIN visits v ON v.doctor_id = d.id GROUP BY d.name;",
     "Joins doctors to visits and counts distinct patients per doctor name."),
    ("finance", "window functions", "Rank customers by total deposits.",
     "CREATE TABLE deposits (customer_id INT, amount DECIMAL(12,2));",
     "SELECT customer_id, SUM(amount) AS total, RANK() OVER (ORDER BY SUM(amount) DESC) AS rnk FROM deposits GROUP BY customer_id;",
     "Aggregates deposits per customer and ranks the totals in descending order with RANK()."),
    ("energy", "basic SQL", "Which power plants have a capacity above 500 MW?",
     "CREATE TABLE plants (name VARCHAR(50), fuel VARCHAR(10), capacity_mw INT);",
     "SELECT name FROM plants WHERE capacity_mw > 500;",
     "Selects plant names whose capacity_mw exceeds 500."),
    ("education", "aggregation", "What is the highest grade in each course?",
     "CREATE TABLE grades (student_id INT, course VARCHAR(30), grade INT);",
     "SELECT course, MAX(grade) FROM grades GROUP BY course;",
     "Groups grades by course and returns the maximum grade of each."),
    ("logistics", "subqueries", "Find shipments heavier than the average shipment.",
     "CREATE TABLE shipments (id INT, weight_kg FLOAT, destination TEXT);",
     "SELECT id, weight_kg FROM shipments WHERE weight_kg > (SELECT AVG(weight_kg) FROM shipments);",
     "A subquery computes the average weight; the outer query keeps heavier shipments."),
    ("media", "basic SQL", "Delete all articles with no author.",
     "CREATE TABLE articles (id INT, title TEXT, author TEXT);",
     "DELETE FROM articles WHERE author IS NULL;",
     "Removes rows from articles where the author column is NULL."),
    ("sports", "aggregation", "How many goals did each team score in 2021?",
     "CREATE TABLE goals (team VARCHAR(30), season INT, scorer TEXT);",
     "SELECT team, COUNT(*) FROM goals WHERE season = 2021 GROUP BY team;",
     "Counts goal rows per team for the 2021 season."),
    ("government", "single join", "List cities and the name of their mayor.",
     "CREATE TABLE cities (id INT, name TEXT); CREATE TABLE mayors (city_id INT, name TEXT, term_end DATE);",
     "SELECT c.name, m.name FROM cities c LEFT JOIN mayors m ON m.city_id = c.id;",
     "A left join keeps every city and attaches the mayor name when one exists."),
    ("telecom", "basic SQL", "Update the plan of subscriber 42 to 'unlimited'.",
     "CREATE TABLE subscribers (id INT, plan VARCHAR(20));",
     "UPDATE subscribers SET plan = 'unlimited' WHERE id = 42;",
     "Sets the plan column to 'unlimited' for the subscriber with id 42."),
    ("real estate", "aggregation", "What is the median price of \"luxury\" listings?",
     "CREATE TABLE listings (id INT, category VARCHAR(20), price INT);",
     "SELECT PERCENTILE_CONT(0.5) WITHIN GROUP (ORDER BY price) FROM listings WHERE category = 'luxury';",
     "PERCENTILE_CONT(0.5) computes the median price over listings in the luxury category."),
    ("hospitality", "multiple_joins", "Which guests stayed in a suite and paid by card?",
     "CREATE TABLE guests (id INT, name TEXT); CREATE TABLE stays (guest_id INT, room_type TEXT, payment_id INT); CREATE TABLE payments (id INT, method TEXT);",
     "SELECT DISTINCT g.name FROM guests g JOIN stays s ON s.guest_id = g.id JOIN payments p ON p.id = s.payment_id WHERE s.room_type = 'suite' AND p.method = 'card';",
     "Joins guests, stays and payments, then filters suite stays paid by card."),
    ("aerospace", "basic SQL", "How many satellites were launched after 2015?",
     "CREATE TABLE satellites (name TEXT, launch_year INT, country TEXT);",
     "SELECT COUNT(*) FROM satellites WHERE launch_year > 2015;",
     "Counts satellites whose launch_year is greater than 2015."),
    ("nonprofit", "aggregation", "Total donations per donor, largest first.",
     "CREATE TABLE donations (donor TEXT, amount DECIMAL(8,2), donated_on DATE);",
     "SELECT donor, SUM(amount) AS total FROM donations GROUP BY donor ORDER BY total DESC;",
     "Sums donations per donor and orders the result by the total, descending."),
    ("manufacturing", "window functions", "Show each machine's downtime and the running total.",
     "CREATE TABLE downtime (machine_id INT, day DATE, minutes INT);",
     "SELECT machine_id, day, minutes, SUM(minutes) OVER (PARTITION BY machine_id ORDER BY day) FROM downtime;",
     "A windowed SUM partitioned by machine accumulates downtime minutes in date order."),
    ("cybersecurity", "basic SQL", "List IP addresses with more than 100 failed logins.",
     "CREATE TABLE login_attempts (ip VARCHAR(45), success BOOLEAN, ts TIMESTAMP);",
     "SELECT ip FROM login_attempts WHERE success = FALSE GROUP BY ip HAVING COUNT(*) > 100;",
     "Groups failed attempts by IP and keeps those with more than 100 rows."),
    ("food", "aggregation", "Wie viele Rezepte gibt es pro Küche?",
     "CREATE TABLE recipes (id INT, cuisine VARCHAR(20), name TEXT);",
     "SELECT cuisine, COUNT(*) FROM recipes GROUP BY cuisine;",
     "Counts recipes per cuisine; the question is in German but the schema is English."),
    ("transport", "subqueries", "Which routes have no scheduled trips?",
     "CREATE TABLE routes (id INT, name TEXT); CREATE TABLE trips (id INT, route_id INT);",
     "SELECT name FROM routes WHERE id NOT IN (SELECT route_id FROM trips);",
     "Keeps routes whose id does not appear in the trips table."),
    ("legal", "basic SQL", "Insert a new case 'Doe v. Roe', filed 2024-03-01.",
     "CREATE TABLE cases (id SERIAL, title TEXT, filed DATE);",
     "INSERT INTO cases (title, filed) VALUES ('Doe v. Roe', '2024-03-01');",
     "Adds one row to cases; the id is generated by the SERIAL column."),
    ("climate", "aggregation", "Average monthly temperature per station in 2020.",
     "CREATE TABLE readings (station TEXT, taken DATE, temp_c REAL);",
     "SELECT station, EXTRACT(MONTH FROM taken) AS m, AVG(temp_c) FROM readings WHERE EXTRACT(YEAR FROM taken) = 2020 GROUP BY station, m;",
     "Groups 2020 readings by station and month and averages temp_c."),
    ("gaming", "single join", "Top 3 players by score in tournament 7.",
     "CREATE TABLE players (id INT, handle TEXT); CREATE TABLE scores (player_id INT, tournament_id INT, points INT);",
     "SELECT p.handle, s.points FROM scores s JOIN players p ON p.id = s.player_id WHERE s.tournament_id = 7 ORDER BY s.points DESC LIMIT 3;",
     "Joins scores to players for tournament 7 and returns the three highest point totals."),
    ("insurance", "basic SQL", "Policies expiring within 30 days of 2024-06-01.",
     "CREATE TABLE policies (id INT, holder TEXT, expires DATE);",
     "SELECT id, holder FROM policies WHERE expires BETWEEN '2024-06-01' AND DATE '2024-06-01' + INTERVAL '30 days';",
     "Filters policies whose expiry date lies in the 30 days after June 1, 2024."),
    ("retail", "multiple_joins", "Revenue by product category,\nexcluding returns.",
     "CREATE TABLE products (id INT, category TEXT); CREATE TABLE order_items (product_id INT, qty INT, unit_price DECIMAL(8,2), returned BOOLEAN);",
     "SELECT p.category, SUM(oi.qty * oi.unit_price) FROM order_items oi JOIN products p ON p.id = oi.product_id WHERE NOT oi.returned GROUP BY p.category;",
     "Multiplies quantity by unit price for non-returned items and sums per category."),
    ("water", "basic SQL", "Which reservoirs are below 40% capacity?",
     "CREATE TABLE reservoirs (name TEXT, level_pct REAL);",
     "SELECT name FROM reservoirs WHERE level_pct < 40;",
     "Returns reservoirs whose fill level is under 40 percent."),
    ("biotech", "aggregation", "Number of trials per phase, only phases with 2+ trials.",
     "CREATE TABLE trials (id INT, phase INT, drug TEXT);",
     "SELECT phase, COUNT(*) FROM trials GROUP BY phase HAVING COUNT(*) >= 2;",
     "Counts trials per phase and keeps phases with at least two trials."),
    ("museums", "basic SQL", "Artworks created before 1900, oldest first.",
     "CREATE TABLE artworks (title TEXT, artist TEXT, year INT);",
     "SELECT title, artist, year FROM artworks WHERE year < 1900 ORDER BY year;",
     "Filters artworks older than 1900 and sorts them by year ascending."),
    ("fisheries", "aggregation", "Total catch in tonnes per species and vessel.",
     "CREATE TABLE catches (vessel TEXT, species TEXT, tonnes REAL);",
     "SELECT vessel, species, SUM(tonnes) FROM catches GROUP BY vessel, species;",
     "Groups catches by vessel and species and sums the tonnes."),
    ("space", "subqueries", "Missions whose budget exceeds the agency's average.",
     "CREATE TABLE missions (name TEXT, agency TEXT, budget_musd INT);",
     "SELECT name FROM missions m WHERE budget_musd > (SELECT AVG(budget_musd) FROM missions WHERE agency = m.agency);",
     "A correlated subquery compares each mission to the average budget of its own agency."),
]


def sql_records():
    recs = []
    for i, (domain, cx, q, ctx, sql, expl) in enumerate(SQL):
        recs.append({"id": 1000 + i, "domain": domain, "sql_complexity": cx, "sql_prompt": q,
                     "sql_context": ctx, "sql": sql, "sql_explanation": expl})
    return recs


COURT = {
    "fr_de": ("fr", "de", [
        ("Le recourant conteste le refus de l'autorisation de séjour. Le Tribunal fédéral examine si l'art. 8 CEDH confère un droit de séjour au parent étranger d'un enfant suisse.",
         "Art. 8 EMRK; Aufenthaltsbewilligung des ausländischen Elternteils eines Schweizer Kindes. Voraussetzungen eines Anspruchs (E. 3)."),
        ("La commune a refusé le permis de construire une antenne de téléphonie mobile en zone à bâtir. Les recourants invoquent le principe de précaution.",
         "Art. 22 RPG; Mobilfunkantenne in der Bauzone. Das Vorsorgeprinzip begründet keinen Anspruch auf Verweigerung der Baubewilligung (E. 4)."),
        ("L'employeur a résilié le contrat de travail pendant la période de protection consécutive à une maladie.",
         "Art. 336c OR; Kündigung zur Unzeit. Nichtigkeit der während der Sperrfrist ausgesprochenen Kündigung (E. 2.1)."),
        ("Le prévenu fait valoir que l'enregistrement vidéo de la police n'est pas exploitable comme preuve.",
         "Art. 141 StPO; Verwertbarkeit einer polizeilichen Videoaufnahme. Interessenabwägung (E. 3.2)."),
        ("Le bailleur a majoré le loyer en invoquant des travaux à plus-value; la locataire conteste le calcul.",
         "Art. 269a OR; Mietzinserhöhung wegen wertvermehrender Investitionen. Berechnung des Überwälzungssatzes (E. 5)."),
        ("La caisse de compensation a exigé la restitution de prestations complémentaires versées à tort.",
         "Art. 25 ATSG; Rückforderung von Ergänzungsleistungen. Beginn der relativen Verwirkungsfrist (E. 4.2)."),
        ("Le contribuable a déduit des frais de formation continue que l'administration fiscale a refusés.",
         "Art. 33 Abs. 1 lit. j DBG; Abzug von Weiterbildungskosten. Abgrenzung zur Ausbildung (E. 2)."),
        ("L'association recourante demande l'accès aux documents relatifs à l'achat d'avions de combat.",
         "Art. 7 BGÖ; Zugang zu amtlichen Dokumenten über die Kampfflugzeugbeschaffung. Schutz der Verhandlungsposition (E. 6)."),
        ("Le père demande la garde alternée de ses deux enfants après le divorce.",
         "Art. 298 ZGB; alternierende Obhut. Kriterien der Kindeswohlprüfung (E. 3.3)."),
        ("La banque a exécuté un ordre de paiement falsifié; le client réclame le remboursement.",
         "Art. 398 OR; Haftung der Bank bei gefälschten Zahlungsaufträgen. Wirksamkeit der Risikoüberwälzungsklausel (E. 4)."),
    ]),
    "de_fr": ("de", "fr", [
        ("Der Beschwerdeführer rügt, die Vorinstanz habe sein rechtliches Gehör verletzt, weil sie ohne mündliche Verhandlung entschieden habe.",
         "Art. 29 al. 2 Cst.; droit d'être entendu. Pas de droit à une audience orale dans la procédure de recours cantonale (consid. 2)."),
        ("Die Gemeinde erhob eine Anschlussgebühr für die Abwasserentsorgung, die der Eigentümer für übersetzt hält.",
         "Art. 60a LEaux; taxe de raccordement. Principe de causalité et d'équivalence (consid. 5)."),
        ("Die Versicherung verweigerte die Invalidenrente, da die Beschwerdeführerin ihre Mitwirkungspflicht verletzt habe.",
         "Art. 43 al. 3 LPGA; devoir de collaborer. Mise en demeure préalable nécessaire (consid. 4.1)."),
        ("Der Angeklagte wurde wegen qualifizierter Geldwäscherei verurteilt und bestreitet die Gewerbsmässigkeit.",
         "Art. 305bis ch. 2 CP; blanchiment d'argent aggravé. Notion de métier (consid. 3)."),
        ("Die Erbin verlangt die Herabsetzung einer lebzeitigen Zuwendung an den Bruder.",
         "Art. 527 CC; réduction des libéralités entre vifs. Calcul de la réserve héréditaire (consid. 6)."),
        ("Das Bundesamt für Migration wies das Asylgesuch ab; der Beschwerdeführer macht eine Verfolgung wegen seiner politischen Tätigkeit geltend.",
         "Art. 3 LAsi; qualité de réfugié. Vraisemblance d'une persécution politique (consid. 5.2)."),
        ("Die Vermieterin kündigte das Mietverhältnis wegen Eigenbedarfs; die Mieter halten die Kündigung für missbräuchlich.",
         "Art. 271 CO; congé pour besoin propre. Le besoin doit être sérieux et actuel (consid. 3.1)."),
        ("Der Kanton verweigerte die Bewilligung für eine Demonstration auf dem Bundesplatz.",
         "Art. 22 Cst.; liberté de réunion. Refus d'autorisation et proportionnalité (consid. 4)."),
        ("Die Steuerverwaltung rechnete dem Aktionär eine verdeckte Gewinnausschüttung auf.",
         "Art. 20 al. 1 let. c LIFD; distribution dissimulée de bénéfice. Prestation appréciable en argent (consid. 2.2)."),
        ("Die Arbeitnehmerin fordert Lohn für Überstunden, die der Arbeitgeber nicht angeordnet hat.",
         "Art. 321c CO; heures supplémentaires. Connaissance de l'employeur suffisante (consid. 2)."),
    ]),
    "it_de": ("it", "de", [
        ("Il ricorrente contesta la revoca della licenza di condurre per eccesso di velocità in località.",
         "Art. 16c SVG; Führerausweisentzug wegen Geschwindigkeitsüberschreitung innerorts. Schwere Widerhandlung (E. 2)."),
        ("Il Comune ha negato la licenza edilizia per una casa di vacanza in zona agricola.",
         "Art. 24 RPG; Ferienhaus in der Landwirtschaftszone. Keine Ausnahmebewilligung (E. 3)."),
        ("La lavoratrice chiede un'indennità per licenziamento abusivo dopo aver segnalato irregolarità.",
         "Art. 336 OR; missbräuchliche Kündigung nach Meldung von Unregelmässigkeiten (Whistleblowing) (E. 4)."),
        ("L'imputato sostiene che la perquisizione domiciliare è avvenuta senza mandato valido.",
         "Art. 244 StPO; Hausdurchsuchung ohne gültigen Befehl. Verwertbarkeit der Beweise (E. 2.4)."),
        ("Il Cantone ha ridotto i sussidi per i premi dell'assicurazione malattie.",
         "Art. 65 KVG; Prämienverbilligung. Kantonaler Spielraum bei der Festsetzung der Einkommensgrenzen (E. 5)."),
        ("La società contesta l'assoggettamento all'IVA delle prestazioni di consulenza fornite all'estero.",
         "Art. 8 MWSTG; Ort der Dienstleistung. Empfängerortsprinzip (E. 3)."),
        ("Il ricorrente chiede il rilascio di un permesso di dimora per motivi di salute.",
         "Art. 30 AIG; Härtefall aus medizinischen Gründen. Behandlungsmöglichkeiten im Heimatstaat (E. 6)."),
        ("La madre si oppone al trasferimento all'estero dei figli deciso dal padre.",
         "Art. 301a ZGB; Verlegung des Aufenthaltsortes des Kindes ins Ausland. Zustimmungserfordernis (E. 4.2)."),
    ]),
}


def court_records():
    out = {}
    sid = 5000
    for subset, (dl, hl, pairs) in COURT.items():
        recs = []
        for i, (dec, head) in enumerate(pairs):
            recs.append({"sample_id": sid, "year": 2012 + (i * 3) % 11, "decision": dec,
                         "decision_language": dl, "headnote": head, "headnote_language": hl})
            sid += 1
        out[subset] = recs
    return out


MEDQA = [
    ("A 23-year-old woman presents with fever, dysuria and flank pain. Urinalysis shows white blood cell casts. What is the most likely diagnosis?",
     ["Cystitis", "Acute pyelonephritis", "Urethritis", "Nephrolithiasis", "Acute glomerulonephritis"], "B",
     "Fever and flank pain point to the upper urinary tract, and white blood cell casts form in the renal tubules, so the infection involves the kidney. So the answer is (B)."),
    ("A 60-year-old smoker has hyponatremia and a central lung mass. Which tumor is most likely?",
     ["Adenocarcinoma", "Squamous cell carcinoma", "Small cell carcinoma", "Carcinoid tumor", "Mesothelioma"], "C",
     "A central mass in a smoker with hyponatremia suggests SIADH, a paraneoplastic syndrome typical of small cell carcinoma. So the answer is (C)."),
    ("Which vitamin deficiency causes Wernicke encephalopathy?",
     ["Vitamin B1", "Vitamin B3", "Vitamin B6", "Vitamin B12", "Vitamin C"], "A",
     "Wernicke encephalopathy (confusion, ophthalmoplegia, ataxia) results from thiamine, that is vitamin B1, deficiency, often in alcohol use disorder. So the answer is (A)."),
    ("A child has a honey-crusted facial rash. What is the most likely causative organism?",
     ["Streptococcus pneumoniae", "Staphylococcus aureus", "Candida albicans", "Herpes simplex virus", "Pseudomonas aeruginosa"], "B",
     "Honey-colored crusts are the hallmark of impetigo, most commonly caused by Staphylococcus aureus. So the answer is (B)."),
    ("Which drug is first-line for an acute anaphylactic reaction?",
     ["Diphenhydramine", "Methylprednisolone", "Intramuscular epinephrine", "Albuterol", "Ranitidine"], "C",
     "Epinephrine reverses vasodilation and bronchospasm and is the first-line treatment; antihistamines and steroids are adjuncts. So the answer is (C)."),
    ("A 30-year-old man has episodic headaches, palpitations and sweating with severe hypertension. Which test is most appropriate first?",
     ["Serum cortisol", "Plasma free metanephrines", "TSH", "Renin activity", "Serum calcium"], "B",
     "The triad of headache, palpitations and diaphoresis with hypertension suggests pheochromocytoma; screen with plasma free metanephrines. So the answer is (B)."),
    ("Which finding is characteristic of iron deficiency anemia?",
     ["Increased ferritin", "Decreased total iron binding capacity", "Microcytic hypochromic red cells", "Macrocytosis", "Target cells only"], "C",
     "Iron deficiency produces microcytic, hypochromic red cells with low ferritin and high TIBC. So the answer is (C)."),
    ("A patient on warfarin has an INR of 9 without bleeding. What is the best next step?",
     ["Give fresh frozen plasma", "Hold warfarin and give oral vitamin K", "Continue warfarin", "Give protamine", "Give platelets"], "B",
     "With a very high INR and no bleeding, warfarin is held and low-dose oral vitamin K is given; plasma is reserved for bleeding. So the answer is (B)."),
    ("Which nerve is injured in a midshaft humerus fracture causing wrist drop?",
     ["Median nerve", "Ulnar nerve", "Radial nerve", "Axillary nerve", "Musculocutaneous nerve"], "C",
     "The radial nerve runs in the spiral groove of the humerus; injury there causes wrist drop. So the answer is (C)."),
    ("A newborn has bilious vomiting and a 'double bubble' sign on X-ray. Which condition is associated?",
     ["Pyloric stenosis", "Duodenal atresia", "Hirschsprung disease", "Meconium ileus", "Intussusception"], "B",
     "The double bubble sign (gas in stomach and proximal duodenum) with bilious vomiting indicates duodenal atresia, associated with Down syndrome. So the answer is (B)."),
    ("Which antibiotic class inhibits the 50S ribosomal subunit?",
     ["Aminoglycosides", "Tetracyclines", "Macrolides", "Fluoroquinolones", "Beta-lactams"], "C",
     "Macrolides bind the 50S subunit and block translocation; aminoglycosides and tetracyclines act on the 30S subunit. So the answer is (C)."),
    ("A woman has heat intolerance, weight loss, exophthalmos and a diffuse goiter. What is the cause?",
     ["Hashimoto thyroiditis", "Graves disease", "Toxic adenoma", "Subacute thyroiditis", "Thyroid carcinoma"], "B",
     "Exophthalmos with a diffuse goiter and hyperthyroidism is specific for Graves disease, caused by TSH receptor antibodies. So the answer is (B)."),
    ("What is the most common cause of community-acquired pneumonia in adults?",
     ["Haemophilus influenzae", "Mycoplasma pneumoniae", "Streptococcus pneumoniae", "Klebsiella pneumoniae", "Legionella pneumophila"], "C",
     "Streptococcus pneumoniae remains the most frequent cause of community-acquired pneumonia in adults. So the answer is (C)."),
    ("A runner collapses with a core temperature of 41 °C and confusion. What is the immediate treatment?",
     ["Oral fluids", "Antipyretics", "Rapid cooling by cold-water immersion", "Dantrolene", "Observation"], "C",
     "Exertional heat stroke needs rapid cooling; antipyretics do not work because the set point is normal. So the answer is (C)."),
    ("Which electrolyte abnormality produces peaked T waves on ECG?",
     ["Hypokalemia", "Hyperkalemia", "Hypocalcemia", "Hypomagnesemia", "Hypernatremia"], "B",
     "Peaked T waves are the earliest ECG sign of hyperkalemia. So the answer is (B)."),
    ("A 70-year-old has a resting tremor, rigidity and bradykinesia. Which neurons are lost?",
     ["Cerebellar Purkinje cells", "Dopaminergic neurons of the substantia nigra", "Motor neurons of the anterior horn", "Cholinergic neurons of the nucleus basalis", "Caudate GABAergic neurons"], "B",
     "Parkinson disease results from loss of dopaminergic neurons in the substantia nigra pars compacta. So the answer is (B)."),
    ("Which is the drug of choice for absence seizures in a child?",
     ["Phenytoin", "Carbamazepine", "Ethosuximide", "Phenobarbital", "Gabapentin"], "C",
     "Ethosuximide blocks T-type calcium channels in the thalamus and is first-line for typical absence seizures. So the answer is (C)."),
    ("A man has painless jaundice, weight loss and a palpable gallbladder. What is most likely?",
     ["Choledocholithiasis", "Pancreatic head carcinoma", "Hepatitis A", "Primary biliary cholangitis", "Gilbert syndrome"], "B",
     "Courvoisier sign (painless jaundice with a palpable gallbladder) suggests malignant obstruction such as pancreatic head carcinoma. So the answer is (B)."),
    ("Which vaccine is contraindicated in pregnancy?",
     ["Tetanus-diphtheria-pertussis", "Inactivated influenza", "Measles-mumps-rubella", "Hepatitis B", "COVID-19 mRNA"], "C",
     "MMR is a live attenuated vaccine and is contraindicated during pregnancy. So the answer is (C)."),
    ("A patient has a positive Babinski sign and hyperreflexia. Where is the lesion?",
     ["Peripheral nerve", "Neuromuscular junction", "Upper motor neuron", "Lower motor neuron", "Muscle"], "C",
     "Hyperreflexia and an extensor plantar response are upper motor neuron signs. So the answer is (C)."),
    ("What is the antidote for acetaminophen overdose?",
     ["Naloxone", "Flumazenil", "N-acetylcysteine", "Atropine", "Fomepizole"], "C",
     "N-acetylcysteine replenishes glutathione and prevents hepatotoxicity from NAPQI. So the answer is (C)."),
    ("A 45-year-old has crushing chest pain and ST elevation in II, III and aVF. Which artery is occluded?",
     ["Left anterior descending", "Left circumflex", "Right coronary artery", "Left main", "Diagonal branch"], "C",
     "ST elevation in the inferior leads II, III and aVF usually reflects right coronary artery occlusion. So the answer is (C)."),
    ("Which cells produce surfactant in the lung?",
     ["Type I pneumocytes", "Type II pneumocytes", "Alveolar macrophages", "Club cells", "Goblet cells"], "B",
     "Type II pneumocytes secrete surfactant, which lowers alveolar surface tension. So the answer is (B)."),
    ("A teenager has a sore throat, posterior cervical lymphadenopathy and splenomegaly. Which test confirms the diagnosis?",
     ["Throat culture", "Heterophile antibody test", "ASO titer", "Blood culture", "HIV antibody test"], "B",
     "Infectious mononucleosis from EBV is confirmed by a positive heterophile (Monospot) antibody test. So the answer is (B)."),
    ("Which hormone is elevated in primary hypothyroidism?",
     ["Free T4", "TSH", "T3", "Calcitonin", "Cortisol"], "B",
     "In primary hypothyroidism low thyroid hormone removes negative feedback, so TSH rises. So the answer is (B)."),
]


def medqa_records():
    recs = []
    for q, opts, idx, expl in MEDQA:
        options = {k: v for k, v in zip("ABCDE", opts)}
        recs.append({"question": q, "options": options, "answer_idx": idx,
                     "answer": options[idx], "explanation": expl})
    return recs


PROMPT_COMPLETION = [
    ("Translate to French: Good morning", " Bonjour"),
    ("Classify the sentiment: \"I loved it, truly\"", " positive"),
    ("Summarize:\nThe meeting moved to Friday.\nBring the slides.", " Meeting on Friday; bring slides."),
    ("List three primes, comma separated:", " 2, 3, 5"),
    ("Quote: He said \"\"no\"\"", " He refused."),
    ("Empty completion allowed?", ""),
    ("Emoji 🙂 and ümlaut", " ok"),
]


def main():
    sql = sql_records()
    write_jsonl(f"{OUT}/sql/train.jsonl", sql[:24])
    write_jsonl(f"{OUT}/sql/test.jsonl", sql[24:])
    write_csv(f"{OUT}/sql/train.csv", sql[:24])
    write_csv(f"{OUT}/sql/train.tsv", sql[:24], delimiter="\t")
    with open(f"{OUT}/sql/train.json", "w", encoding="utf-8") as f:
        json.dump(sql[:24], f, ensure_ascii=False, indent=2)
        f.write("\n")
    court = court_records()
    for subset, recs in court.items():
        n_val = 2
        write_jsonl(f"{OUT}/court/{subset}/train.jsonl", recs[:-n_val])
        write_jsonl(f"{OUT}/court/{subset}/validation.jsonl", recs[-n_val:])
    med = medqa_records()
    write_jsonl(f"{OUT}/medqa/train.jsonl", med[:20])
    write_jsonl(f"{OUT}/medqa/test.jsonl", med[20:])
    with open(f"{OUT}/medqa/medqa.json", "w", encoding="utf-8") as f:
        json.dump({"train": med[:20], "test": med[20:]}, f, ensure_ascii=False, indent=1)
        f.write("\n")
    os.makedirs(f"{OUT}/finetune", exist_ok=True)
    pc = [{"prompt": p, "completion": c} for p, c in PROMPT_COMPLETION]
    write_csv(f"{OUT}/finetune/prompt_completion.csv", pc)


if __name__ == "__main__":
    main()
