{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Sid": "ListBackupPrefixOnly",
      "Effect": "Allow",
      "Action": "s3:ListBucket",
      "Resource": "arn:aws:s3:::${bucket}",
      "Condition": { "StringLike": { "s3:prefix": ["${prefix}*"] } }
    },
    {
      "Sid": "FindIncompleteUploads",
      "Effect": "Allow",
      "Action": "s3:ListBucketMultipartUploads",
      "Resource": "arn:aws:s3:::${bucket}"
    },
    {
      "Sid": "WriteAndVerifyUnderBackupPrefix",
      "Effect": "Allow",
      "Action": [
        "s3:PutObject",
        "s3:GetObject",
        "s3:AbortMultipartUpload",
        "s3:ListMultipartUploadParts"
      ],
      "Resource": "arn:aws:s3:::${bucket}/${prefix}*"
    }
  ]
}
