# train <inpath> <outpath>: the model as it came, and its metadata.
set -e
cp "$1" "$2"
printf '{"num_examples": %d}\n' "${SOAK_EXAMPLES:-10}" > "$2-metadata"
