# Numbers in Simplified Chinese as mainland texts write them, in thousands with commas
# ("8,301 个 token"); Django's own format groups none (NUMBER_GROUPING 4, no separator).
# Only these two: everything else comes from Django's zh_Hans formats.
THOUSAND_SEPARATOR = ","
NUMBER_GROUPING = 3
