"""Language codes: corpus metadata says `pt-br` or `gn`, MMS models speak ISO 639-3 (`por`, `grn`, `gug`).

`to_iso639_3` maps a BCP-47-like tag (its primary subtag) or an ISO 639-1/639-3 code to ISO 639-3.
`same_language` also accepts a macrolanguage and its individual languages as one (ISO 639-3 lists
`grn` Guarani as a macrolanguage of `gug`, `gui`, `gun`…; MMS labels sometimes use either).
"""

from __future__ import annotations

import re

# ISO 639-1 → ISO 639-3 (639-2/T where the two differ), the full 639-1 list.
_ISO1_TO_3 = dict(pair.split(":") for pair in """
aa:aar ab:abk ae:ave af:afr ak:aka am:amh an:arg ar:ara as:asm av:ava ay:aym az:aze ba:bak be:bel bg:bul
bi:bis bm:bam bn:ben bo:bod br:bre bs:bos ca:cat ce:che ch:cha co:cos cr:cre cs:ces cu:chu cv:chv cy:cym
da:dan de:deu dv:div dz:dzo ee:ewe el:ell en:eng eo:epo es:spa et:est eu:eus fa:fas ff:ful fi:fin fj:fij
fo:fao fr:fra fy:fry ga:gle gd:gla gl:glg gn:grn gu:guj gv:glv ha:hau he:heb hi:hin ho:hmo hr:hrv ht:hat
hu:hun hy:hye hz:her ia:ina id:ind ie:ile ig:ibo ii:iii ik:ipk io:ido is:isl it:ita iu:iku ja:jpn jv:jav
ka:kat kg:kon ki:kik kj:kua kk:kaz kl:kal km:khm kn:kan ko:kor kr:kau ks:kas ku:kur kv:kom kw:cor ky:kir
la:lat lb:ltz lg:lug li:lim ln:lin lo:lao lt:lit lu:lub lv:lav mg:mlg mh:mah mi:mri mk:mkd ml:mal mn:mon
mr:mar ms:msa mt:mlt my:mya na:nau nb:nob nd:nde ne:nep ng:ndo nl:nld nn:nno no:nor nr:nbl nv:nav ny:nya
oc:oci oj:oji om:orm or:ori os:oss pa:pan pi:pli pl:pol ps:pus pt:por qu:que rm:roh rn:run ro:ron ru:rus
rw:kin sa:san sc:srd sd:snd se:sme sg:sag si:sin sk:slk sl:slv sm:smo sn:sna so:som sq:sqi sr:srp ss:ssw
st:sot su:sun sv:swe sw:swa ta:tam te:tel tg:tgk th:tha ti:tir tk:tuk tl:tgl tn:tsn to:ton tr:tur ts:tso
tt:tat tw:twi ty:tah ug:uig uk:ukr ur:urd uz:uzb ve:ven vi:vie vo:vol wa:wln wo:wol xh:xho yi:yid yo:yor
za:zha zh:zho zu:zul
""".split())

# ISO 639-2/B codes that differ from 639-3 (metadata written by librarians uses them).
_ISO2B_TO_3 = {"alb": "sqi", "arm": "hye", "baq": "eus", "bur": "mya", "chi": "zho", "cze": "ces", "dut": "nld",
               "fre": "fra", "geo": "kat", "ger": "deu", "gre": "ell", "ice": "isl", "mac": "mkd", "mao": "mri",
               "may": "msa", "per": "fas", "rum": "ron", "slo": "slk", "tib": "bod", "wel": "cym"}

# Macrolanguages whose individual languages MMS models may name instead (a selection, ISO 639-3 tables).
MACROLANGUAGES = {
    "ara": {"arb", "arz", "ary", "arq", "aeb", "apc", "ajp", "acm", "ars", "acw", "ayp", "apd", "shu", "afb"},
    "aym": {"ayr", "ayc"}, "aze": {"azj", "azb"}, "est": {"ekk", "vro"}, "fas": {"pes", "prs"},
    "ful": {"fuc", "fuf", "ffm", "fuv", "fue", "fuh", "fub", "fui"}, "grn": {"gug", "gui", "gun", "gnw", "nhd"},
    "kau": {"knc", "kby", "krt"}, "kon": {"kng", "kwy", "ldi"}, "kur": {"kmr", "ckb", "sdh"}, "lav": {"lvs", "ltg"},
    "mlg": {"plt", "xmv", "bhr", "tdx"}, "mon": {"khk", "mvf"}, "msa": {"zsm", "ind", "min", "bjn", "mfa", "kxd"},
    "nep": {"npi", "dty"}, "nor": {"nob", "nno"}, "ori": {"ory", "spv"}, "orm": {"gaz", "hae", "orc", "gax"},
    "pus": {"pbt", "pbu", "pst"}, "que": {"quz", "quy", "qub", "qug", "qvi", "quh", "qul", "qxn", "qvw", "qwh",
                                          "quf", "qvc", "qvs", "qvn"},
    "sqi": {"als", "aln"}, "swa": {"swh", "swc"}, "uzb": {"uzn", "uzs"}, "yid": {"ydd", "yih"},
    "zho": {"cmn", "yue", "nan", "wuu", "hak", "hsn", "gan", "cdo", "cjy"},
}
_PARENT = {member: macro for macro, members in MACROLANGUAGES.items() for member in members}
_TAG = re.compile(r"^[A-Za-z]{2,3}$")


def to_iso639_3(tag: object) -> str | None:
    """`pt-br` → `por`, `gn` → `grn`, `por` → `por`; None for an empty or unreadable tag.

    Only the primary subtag counts (`pt-BR`, `pt_br`, `pt+f3` are all Portuguese). A three-letter code is
    taken as ISO 639-3 (or its 639-2/B form); any other text (a language name) is not guessed at.
    """
    if tag is None or (isinstance(tag, float) and tag != tag):  # None or NaN from a parquet column
        return None
    primary = re.split(r"[-_+\s]", str(tag).strip(), maxsplit=1)[0].lower()
    if not _TAG.match(primary):
        return None
    if len(primary) == 2:
        return _ISO1_TO_3.get(primary)
    return _ISO2B_TO_3.get(primary, primary)


def accepted_codes(code: str) -> set[str]:
    """A code with its macrolanguage and that macrolanguage's members: what counts as 'the same language'."""
    macro = _PARENT.get(code, code)
    return {code, macro} | MACROLANGUAGES.get(macro, set())


def same_language(label: str, expected: str) -> bool:
    """Whether a model's ISO 639-3 label names the expected language (macrolanguages included)."""
    return to_iso639_3(label) in accepted_codes(expected)
