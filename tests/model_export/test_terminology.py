"""The terminology test set: glossary entries and test cases from held-out catalogs."""

from model_export.terminology import (
    Case,
    glossary_entries,
    has_term,
    term_use,
    terminology_cases,
    usual_case,
)

PAIRS = [("Trash", "Papierkorb"), ("Empty Trash", "Papierkorb leeren"),
         ("Open", "Öffnen"), ("open", "offen"),  # two translations: not a glossary entry
         ("Save %s", "%s speichern"), ("New Event", "Neuer Termin"),
         ("Move the file to the trash", "Die Datei in den Papierkorb verschieben"),
         ("Add a new event now", "Jetzt einen neuen Termin hinzufügen"),  # reference inflects
         ("Create a new event here", "Hier einen Neuer Termin erstellen")]


def test_one_and_two_word_entries_with_one_translation_make_the_glossary() -> None:
    assert glossary_entries(PAIRS) == {"Trash": "Papierkorb", "Empty Trash": "Papierkorb leeren",
                                       "New Event": "Neuer Termin"}


def test_cases_are_longer_strings_whose_reference_uses_the_term() -> None:
    cases = terminology_cases(PAIRS, glossary_entries(PAIRS))
    assert cases == [Case("Move the file to the trash", PAIRS[6][1], {"Trash": "Papierkorb"}),
                     Case("Create a new event here", PAIRS[8][1],
                          {"New Event": "Neuer Termin"})]
    assert term_use(cases, ["Datei in den PAPIERKORB", "Neue Termine"]) == (1, 2)


def test_terms_are_whole_words() -> None:
    assert has_term("in den Papierkorb.", "papierkorb")
    assert not has_term("Papierkorbinhalt", "Papierkorb")
    assert has_term("Neuer  Termin", "Neuer Termin")


def test_a_term_is_written_as_the_catalogs_write_it_inside_a_sentence() -> None:
    entries = {"Window": "Fenêtre", "Trash": "Corbeille", "Read-only": "Lecture seule",
               "Calendar": "Agenda"}
    pairs = [("Close the window", "Fermer la fenêtre"), ("Window", "Fenêtre"),
             ("Empty the trash", "Vider la corbeille"), ("Trash: %s", "Corbeille : %s"),
             ("Open the Trash", "Ouvrir la Corbeille"), ("the Trash", "la Corbeille"),
             ("This file is read-only", "Ce fichier est en lecture seule"),
             ("Calendar. Calendar", "Agenda. Agenda")]  # only ever sentence-initial
    assert usual_case(entries, pairs) == {"Window": "fenêtre", "Trash": "Corbeille",
                                          "Read-only": "lecture seule", "Calendar": "Agenda"}
