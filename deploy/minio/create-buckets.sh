#!/bin/sh
# One-shot MinIO setup (service minio-init, image minio/mc). Idempotent.
#  - buckets: the lake (FRAUD_LAKE_S3_BUCKET) and MLflow artifacts (MLFLOW_ARTIFACTS_BUCKET)
#  - a non-root service account for the platform (FRAUD_S3_ACCESS_KEY / FRAUD_S3_SECRET_KEY)
#    with read/write on those two buckets only; the root credentials stay with MinIO and this job.
set -eu

: "${MINIO_ROOT_USER:?}" "${MINIO_ROOT_PASSWORD:?}"
: "${FRAUD_LAKE_S3_BUCKET:?}" "${MLFLOW_ARTIFACTS_BUCKET:?}"
: "${FRAUD_S3_ACCESS_KEY:?}" "${FRAUD_S3_SECRET_KEY:?}"
MINIO_URL="${MINIO_URL:-http://minio:9000}"
POLICY_FILE="${TMPDIR:-/tmp}/fraud-platform-policy.json"

mc alias set fraud "${MINIO_URL}" "${MINIO_ROOT_USER}" "${MINIO_ROOT_PASSWORD}"

for bucket in "${FRAUD_LAKE_S3_BUCKET}" "${MLFLOW_ARTIFACTS_BUCKET}"; do
  mc mb --ignore-existing "fraud/${bucket}"
done

cat > "${POLICY_FILE}" <<POLICY
{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Effect": "Allow",
      "Action": ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
      "Resource": ["arn:aws:s3:::${FRAUD_LAKE_S3_BUCKET}", "arn:aws:s3:::${MLFLOW_ARTIFACTS_BUCKET}"]
    },
    {
      "Effect": "Allow",
      "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
      "Resource": ["arn:aws:s3:::${FRAUD_LAKE_S3_BUCKET}/*", "arn:aws:s3:::${MLFLOW_ARTIFACTS_BUCKET}/*"]
    }
  ]
}
POLICY

mc admin policy create fraud fraud-platform-rw "${POLICY_FILE}"
mc admin user add fraud "${FRAUD_S3_ACCESS_KEY}" "${FRAUD_S3_SECRET_KEY}"
if ! mc admin user info fraud "${FRAUD_S3_ACCESS_KEY}" | grep -q fraud-platform-rw; then
  mc admin policy attach fraud fraud-platform-rw --user "${FRAUD_S3_ACCESS_KEY}"
fi
mc ls fraud
