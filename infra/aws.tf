# AWS side: the IAM OIDC provider that trusts Entra ID (v1 issuer), two roles the managed
# identity may assume with its token, and the buckets. IAM documents come from
# infra/policies/*.json.tpl - the same files devstack renders for the local cloud - so the
# policies the tests exercise are the policies deployed here.

resource "aws_iam_openid_connect_provider" "entra" {
  # Must equal the token's iss claim byte for byte, trailing slash included.
  url = local.issuer
  # The audiences STS accepts: the App ID URI the identity requests tokens for.
  client_id_list = [local.audience]
  # IAM now verifies the issuer's JWKS endpoint against its library of trusted root CAs
  # (Microsoft's endpoints chain to public roots), so no thumbprint is needed; with none
  # given IAM records the current intermediate CA itself. Older AWS provider versions
  # required the argument: there, pass the 40-hex SHA-1 thumbprint of the top intermediate
  # CA of login.microsoftonline.com (where the JWKS lives) in var.oidc_thumbprints.
  thumbprint_list = length(var.oidc_thumbprints) > 0 ? var.oidc_thumbprints : null
}

locals {
  policy_dir = "${path.module}/policies"

  # Who may assume the roles: tokens from this provider, for this audience, whose subject
  # is the user-assigned identity's principal (object) ID - and nobody else.
  trust_policy = templatefile("${local.policy_dir}/trust-web-identity.json.tpl", {
    provider_arn  = aws_iam_openid_connect_provider.entra.arn
    provider_key  = local.provider_key
    audience      = local.audience
    subjects_json = jsonencode([azurerm_user_assigned_identity.app.principal_id])
  })
}

# Read role (AWS_ROLE_ARN): list and read the data bucket.
resource "aws_iam_role" "read" {
  name                 = "${var.name}-read"
  description          = "${var.name}: read ${var.s3_bucket_name}, assumed with an Entra ID managed identity token"
  assume_role_policy   = local.trust_policy
  max_session_duration = var.role_max_session_duration
}

resource "aws_iam_role_policy" "read" {
  name   = "s3-read"
  role   = aws_iam_role.read.id
  policy = templatefile("${local.policy_dir}/s3-read.json.tpl", { bucket = aws_s3_bucket.data.bucket })
}

# Backup role (AWS_BACKUP_ROLE_ARN): write only under the backup prefix.
resource "aws_iam_role" "backup" {
  name                 = "${var.name}-backup"
  description          = "${var.name}: write backups under s3://${local.backup_bucket_name}/${var.backup_s3_prefix}"
  assume_role_policy   = local.trust_policy
  max_session_duration = var.role_max_session_duration
}

resource "aws_iam_role_policy" "backup" {
  name = "s3-backup"
  role = aws_iam_role.backup.id
  policy = templatefile("${local.policy_dir}/s3-backup.json.tpl", {
    bucket = local.separate_backup_bucket ? aws_s3_bucket.backup[0].bucket : aws_s3_bucket.data.bucket
    prefix = var.backup_s3_prefix
  })
}

# Restore role (AWS_RESTORE_ROLE_ARN), only with enable_restore: list and read the backup's
# object versions (restore --as-of), never write. Its own role, so the backup role (run
# nightly) never holds version rights and the restore rights can be granted for a drill only.
resource "aws_iam_role" "restore" {
  count                = var.enable_restore ? 1 : 0
  name                 = "${var.name}-restore"
  description          = "${var.name}: read backup versions under s3://${local.backup_bucket_name}/${var.backup_s3_prefix}"
  assume_role_policy   = local.trust_policy
  max_session_duration = var.role_max_session_duration
}

resource "aws_iam_role_policy" "restore" {
  count = var.enable_restore ? 1 : 0
  name  = "s3-restore"
  role  = aws_iam_role.restore[0].id
  policy = templatefile("${local.policy_dir}/s3-restore.json.tpl", {
    bucket = local.separate_backup_bucket ? aws_s3_bucket.backup[0].bucket : aws_s3_bucket.data.bucket
    prefix = var.backup_s3_prefix
  })
}

# --- buckets --------------------------------------------------------------------------
# The data bucket always; a second bucket only when backup_s3_bucket_name differs.
# Both get the same baseline: versioning, default encryption, no public access, bucket
# owner enforced (ACLs off), abort stale multipart uploads, TLS-only bucket policy.

resource "aws_s3_bucket" "data" {
  #checkov:skip=CKV_AWS_18:Server access logging needs a separate log bucket (which itself cannot log); enable CloudTrail S3 data events organisation-wide instead.
  #checkov:skip=CKV_AWS_144:Cross-region replication is a DR decision per deployment; versioning already protects against overwrite/delete.
  #checkov:skip=CKV2_AWS_62:No consumer for S3 event notifications in this app.
  bucket = var.s3_bucket_name
}

resource "aws_s3_bucket" "backup" {
  #checkov:skip=CKV_AWS_18:Same as the data bucket: use CloudTrail S3 data events.
  #checkov:skip=CKV_AWS_144:Cross-region replication is a DR decision per deployment.
  #checkov:skip=CKV2_AWS_62:No consumer for S3 event notifications in this app.
  count  = local.separate_backup_bucket ? 1 : 0
  bucket = local.backup_bucket_name
}

locals {
  buckets = merge(
    { data = aws_s3_bucket.data },
    local.separate_backup_bucket ? { backup = aws_s3_bucket.backup[0] } : {},
  )
}

resource "aws_s3_bucket_versioning" "this" {
  for_each = local.buckets
  bucket   = each.value.id

  versioning_configuration {
    status = "Enabled"
  }
}

# SSE-KMS with the AWS managed key (aws/s3) and an S3 Bucket Key: key use is recorded in
# CloudTrail, and the aws/s3 key policy already allows use through S3 by principals of this
# account, so the IAM policy templates (shared with devstack) need no kms:* permissions.
# The Bucket Key keeps KMS request costs flat. A customer managed key would additionally
# need kms:Decrypt/GenerateDataKey in s3-read/s3-backup and a key policy.
resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  for_each = local.buckets
  bucket   = each.value.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "aws:kms"
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_public_access_block" "this" {
  for_each = local.buckets
  bucket   = each.value.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "this" {
  for_each = local.buckets
  bucket   = each.value.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "this" {
  for_each = local.buckets
  bucket   = each.value.id

  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  rule {
    id     = "expire-noncurrent-versions"
    status = "Enabled"

    filter {}

    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }
  }

  depends_on = [aws_s3_bucket_versioning.this]
}

data "aws_iam_policy_document" "tls_only" {
  for_each = local.buckets

  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      each.value.arn,
      "${each.value.arn}/*",
    ]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "tls_only" {
  for_each = local.buckets
  bucket   = each.value.id
  policy   = data.aws_iam_policy_document.tls_only[each.key].json

  depends_on = [aws_s3_bucket_public_access_block.this]
}
