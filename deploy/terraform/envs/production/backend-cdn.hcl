bucket         = "magento-production-terraform-state"
key            = "cdn/terraform.tfstate"
region         = "eu-west-1"
dynamodb_table = "magento-production-terraform-locks"
encrypt        = true
